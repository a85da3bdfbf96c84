"""Generated update interfaces for the interface-check tests: a well-formed one from a `Spec`
(a small simulated device in a directory given as the first interface arg), and single
mutations that each break one protocol rule. Scripts are written into tmp_path only."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from updates.engine.artifact import write_artifact

YES_NO = ("SupportsRollback", "NeedsArtifactReboot", "NeedsUnpackedArtifact", "ProvidePayloadFileSizes")


@dataclass(frozen=True)
class Spec:
    name: str = "board"
    component_id: str = "B1"
    version: str = "fw-v1"
    extra_provides: tuple[tuple[str, str], ...] = ()
    inventory: tuple[tuple[str, str], ...] = (("serial", "42"),)
    # "" prints nothing (the protocol default applies)
    answers: dict[str, str] = field(
        default_factory=lambda: {
            "SupportsRollback": "Yes",
            "NeedsArtifactReboot": "",
            "NeedsUnpackedArtifact": "",
            "ProvidePayloadFileSizes": "",
        }
    )
    streams: bool = True  # read the streams; False: leave them, get the files tree
    mutation: str | None = None

    def with_answer(self, query: str, word: str) -> Spec:
        return replace(self, answers={**self.answers, query: word})

    @property
    def reboot(self) -> str:
        return self.answers["NeedsArtifactReboot"] or "No"


# mutation -> (the rule it breaks, needs the destructive checks)
QUERY_MUTATIONS = {
    "identity-two-lines": "P-IDENTITY-1",
    "identity-other-id": "P-IDENTITY-2",
    "provides-space-in-key": "P-PROVIDES-1",
    "provides-duplicate-key": "P-PROVIDES-1",
    "provides-both-version-keys": "P-PROVIDES-2",
    "provides-device-type": "P-PROVIDES-3",
    "inventory-not-key-value": "P-INVENTORY-1",
    "answer-lowercase": "P-ANSWER-1",
    "answer-on-two-lines": "P-ANSWER-1",
    "query-exits-3": "P-EXIT-1",
    "query-side-effect": "P-IDEMPOTENT-1",
}
STATE_MUTATIONS = {
    "unknown-state-prints": "P-UNKNOWN-1",
    "download-ignores-stream": "P-DOWNLOAD-1",
    "install-fails": "P-INSTALL-1",
    "commit-reverts": "P-COMMIT-1",
    "rollback-does-nothing": "P-ROLLBACK-1",
    "cleanup-fails-second-time": "P-CLEANUP-1",
    "install-not-rerunnable": "P-RERUN-1",
}


def _lines(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"printf '%s\\n' '{k}={v}'; " for k, v in pairs)


def _answer(word: str) -> str:
    return f"printf '%s\\n' '{word}'" if word else ":"


def script(spec: Spec) -> str:
    m = spec.mutation
    identity = f"printf 'id=%s\\n' '{spec.component_id}'"
    if m == "identity-two-lines":
        identity += f"; printf 'id=%s\\n' '{spec.component_id}'"
    if m == "identity-other-id":
        identity = "printf 'id=someone-else\\n'"
    provides = f"printf 'rootfs-image.{spec.name}.version=%s\\n' \"$(ver)\"; " + _lines(
        list(spec.extra_provides)
    )
    provides += {
        "provides-space-in-key": "printf 'hw rev=3\\n'",
        "provides-duplicate-key": f"printf 'rootfs-image.{spec.name}.version=x\\n'",
        "provides-both-version-keys": "printf 'rootfs-image.version=x\\n'",
        "provides-device-type": f"printf 'device_type={spec.name}\\n'",
    }.get(m or "", ":")
    inventory = _lines(list(spec.inventory)) + {
        "inventory-not-key-value": "printf 'just words\\n'",
        "query-exits-3": "exit 3",
        "query-side-effect": 'n=$(cat "$dev/count" 2>/dev/null || echo 0); echo $((n + 1)) >"$dev/count"; '
        "printf 'asked=%s\\n' \"$n\"",
    }.get(m or "", ":")
    answers = {q: _answer(w) for q, w in spec.answers.items()}
    if m == "answer-lowercase":
        answers["SupportsRollback"] = "printf 'yes\\n'"
    if m == "answer-on-two-lines":
        answers["NeedsUnpackedArtifact"] = "printf 'Yes\\nYes\\n'"
    if spec.streams and m != "download-ignores-stream":
        download = (
            'rm -rf "$dev/incoming"; mkdir -p "$dev/incoming"; while :; do n=$(cat "$wd/stream-next"); '
            '[ -n "$n" ] || break; p=${n%% *}; cat "$wd/$p" >"$dev/incoming/${p#streams/}"; done'
        )
        source = '"$dev/incoming"'
    elif m == "download-ignores-stream":
        download = 'n=$(cat "$wd/stream-next"); echo "got $n, not reading it" >&2'
        source = '"$dev/incoming"'
    else:
        download = ":"
        source = '"$wd/files"'
    rerun_guard = 'if [ -f "$dev/pending" ]; then echo "install already ran" >&2; exit 1; fi; '
    install = (
        ("exit 1; " if m == "install-fails" else "")
        + (rerun_guard if m == "install-not-rerunnable" else "")
        + f'[ -n "$(ls -A {source} 2>/dev/null)" ] || {{ echo "no payload" >&2; exit 1; }}; '
        'new=$(cat "$wd/header/artifact_name"); '
        'if ! [ -f "$dev/pending" ] || [ "$(cat "$dev/pending")" != "$new" ]; then ver >"$dev/previous"; fi; '
        'printf "%s\\n" "$new" >"$dev/pending"; '
        'if [ "$reboot" = No ]; then setv "$new"; fi'
    )
    commit = 'rm -f "$dev/pending"' + ('; setv "$(cat "$dev/previous")"' if m == "commit-reverts" else "")
    rollback = (
        ":"
        if m == "rollback-does-nothing"
        else 'if [ -f "$dev/previous" ]; then if [ "$reboot" = No ]; then rm -f "$dev/pending"; '
        'setv "$(cat "$dev/previous")"; else cat "$dev/previous" >"$dev/pending"; fi; fi'
    )
    cleanup = (
        'rm "$dev/previous" || exit 1; rm -f "$dev/pending"'
        if m == "cleanup-fails-second-time"
        else ('rm -f "$dev/previous" "$dev/pending"')
    )
    unknown = 'echo "unknown state $state"; exit 1' if m == "unknown-state-prints" else ":"
    boot_auto = 'if [ "$reboot" = Automatic ] && [ -f "$dev/pending" ]; then setv "$(cat "$dev/pending")"; fi'
    return f"""#!/bin/sh
# generated by tests/interface_check/maker.py (mutation: {m or "none"})
state=$1 wd=$2 dev=$4
reboot={spec.reboot}
ver() {{ cat "$dev/version"; }}
setv() {{ printf '%s\\n' "$1" >"$dev/version.tmp" && mv "$dev/version.tmp" "$dev/version"; }}
case $state in
    Identity) {identity} ;;
    Provides) {provides} ;;
    Inventory) {inventory} ;;
    SupportsRollback) {answers["SupportsRollback"]} ;;
    NeedsArtifactReboot) {answers["NeedsArtifactReboot"]} ;;
    NeedsUnpackedArtifact) {answers["NeedsUnpackedArtifact"]} ;;
    ProvidePayloadFileSizes) {answers["ProvidePayloadFileSizes"]} ;;
    Download | DownloadWithFileSizes) {download} ;;
    ArtifactInstall) {install} ;;
    ArtifactReboot | ArtifactRollbackReboot) if [ -f "$dev/pending" ]; then setv "$(cat "$dev/pending")"; fi ;;
    ArtifactVerifyReboot) {boot_auto}; [ "$(ver)" = "$(cat "$dev/pending")" ] ;;
    ArtifactCommit) {commit} ;;
    ArtifactRollback) {rollback} ;;
    ArtifactVerifyRollbackReboot) {boot_auto}; if [ -f "$dev/previous" ]; then [ "$(ver)" = "$(cat "$dev/previous")" ]; fi ;;
    ArtifactFailure) : ;;
    Cleanup) {cleanup}; rm -rf "$dev/incoming" ;;
    *) {unknown} ;;
esac
"""


def make_interface(root: Path, spec: Spec) -> tuple[Path, Path]:
    """The interface executable `<root>/v1/<name>` and its device directory (the first arg)."""
    device = root / "device"
    device.mkdir(parents=True, exist_ok=True)
    (device / "version").write_text(f"{spec.version}\n")
    path = root / "v1" / spec.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script(spec))
    path.chmod(0o755)
    return path, device


def make_artifact(root: Path, spec: Spec, name: str = "fw-v2") -> Path:
    """A module-image artifact for the interface, written by the project's own writer."""
    payload = root / f"{name}.img"
    payload.write_bytes(f"firmware {name}\n".encode() * 100)
    out = root / f"{name}.mender"
    write_artifact(
        out, kind="module-image", name=name, device_types=["board"], files=[payload], payload_type=spec.name
    )
    return out
