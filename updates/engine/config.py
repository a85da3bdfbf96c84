"""``mender-orchestrator.conf`` (JSON): main file plus a persistent fallback, merged per key.

The main file (``$MENDER_ORCHESTRATOR_CONF_DIR``, read-only rootfs) wins key by key over the
fallback in the data store, so a device can carry settings that survive rootfs updates. Missing
files are fine; a known key with a wrong value is an error naming file, line and key. An unknown
key is a warning naming the closest known one: a key added by a newer Mender release must not
stop the appliance, and a typo (say ``ArtifactVerifyKeyz``) is still shown to the operator.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from updates.engine.manifest import InputError, Problem

log = logging.getLogger("orchestrator.config")

CONF_NAME = "mender-orchestrator.conf"
# Mender's file naming the device type of the system device (`device_type=gateway`).
DEFAULT_DEVICE_TYPE_FILE = Path("/var/lib/mender/device_type")
LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "fatal")
DEFAULT_TIMEOUT = 14400
MAX_CONF_BYTES = 1 << 20
MAX_TOKEN_BYTES = 64 << 10  # a device JWT is a few KiB
# Nested objects and the keys they accept; everything else is reported as unknown.
_NESTED = {
    "ArtifactsCache": ("Enabled", "Path", "MaxSizeBytes"),
    "HttpsClient": ("Certificate", "Key", "SSLEngine"),
    # Ours (issue #5): where `artifact_name` is downloaded from when neither a bundle nor the
    # store has it. Mender's binary gets this from the client's D-Bus auth; we are configured.
    "ArtifactServer": ("URL", "Token", "TokenFile", "TimeoutSeconds", "Retries"),
}
_TOP_KEYS = (
    "ArtifactServer",
    "ArtifactVerifyKey",
    "ArtifactVerifyKeys",
    "ArtifactsCache",
    "DeviceTypeFile",
    "HttpsClient",
    "InterfaceTimeoutSeconds",
    "LogLevel",
    "ManifestComponents",
    "ManifestStore",
    "ServerCertificate",
    "TopologyComponents",
)


@dataclass(frozen=True)
class OrchestratorConfig:
    verify_keys: tuple[Path, ...]
    interface_timeout_seconds: int = DEFAULT_TIMEOUT
    log_level: str = "info"
    topology_components: Path | None = None
    artifacts_cache_max_size_bytes: int = 0
    raw: Mapping[str, object] = field(default_factory=dict)
    artifacts_cache_enabled: bool = False
    artifacts_cache_path: Path | None = None
    manifest_store: Path | None = None
    server_certificate: Path | None = None
    artifact_server: ArtifactServerConfig | None = None
    device_type_file: Path = DEFAULT_DEVICE_TYPE_FILE
    warnings: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class ArtifactServerConfig:
    url: str
    token: str | None = None
    token_file: Path | None = None
    timeout_seconds: int = 30
    retries: int = 3


@dataclass(frozen=True)
class _Source:
    file: str
    text: str


class _Merged:
    """The merged keys, where each came from, and the problems found so far."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.origin: dict[str, _Source] = {}
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def absorb(self, source: _Source, values: Mapping[str, object]) -> None:
        for key, value in values.items():
            self.values[key] = value
            self.origin[key] = source

    def report(self, key: str, message: str) -> None:
        self.problems.append(self._problem(key, message))

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(self._problem(key, message))

    def _problem(self, key: str, message: str) -> Problem:
        top, _, sub = re.split(r"\[", key)[0].partition(".")
        source = self.origin.get(top)
        file = source.file if source else "<config>"
        line = _key_line(source.text, top, sub) if source else None
        return Problem(file, line, key, message)


def load_config(conf_dir: Path, fallback_dir: Path | None) -> OrchestratorConfig:
    """Load and validate the configuration; raise InputError listing every problem."""
    merged = _Merged()
    for directory in (fallback_dir, conf_dir):  # later wins: the main file overrides the fallback
        if directory is not None:
            _load_file(merged, directory / CONF_NAME)
    config = _build(merged)
    if merged.problems:
        raise InputError(merged.problems)
    for warning in merged.warnings:
        log.warning("mender-orchestrator: warning: %s", warning)
    return config


def _load_file(merged: _Merged, path: Path) -> None:
    text = _read(merged, path)
    if text is None or not text.strip():
        return  # an absent or blank file configures nothing
    source = _Source(str(path), text)
    try:
        values = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        merged.problems.append(Problem(source.file, exc.lineno, "(document)", f"invalid JSON: {exc.msg}"))
        return
    except _DuplicateKey as exc:
        merged.problems.append(Problem(source.file, _key_line(text, exc.key, ""), exc.key, "duplicate key"))
        return
    if not isinstance(values, dict):
        merged.problems.append(Problem(source.file, 1, "(document)", "must be a JSON object"))
        return
    merged.absorb(source, values)


def _read(merged: _Merged, path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONF_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        merged.problems.append(Problem(str(path), None, "(file)", f"cannot read: {exc.strerror or exc}"))
        return None
    if len(data) > MAX_CONF_BYTES:
        merged.problems.append(Problem(str(path), None, "(file)", f"larger than {MAX_CONF_BYTES} bytes"))
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        merged.problems.append(Problem(str(path), line, "(document)", "file is not valid UTF-8"))
        return None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # json keeps the last of two equal keys; two ArtifactVerifyKey lines are a mistake, not an override.
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _key_line(text: str, key: str, sub: str) -> int | None:
    """Best-effort line of ``"key"`` (then of ``"sub"`` after it); JSON parsers keep no positions."""
    match = re.search(rf'"{re.escape(key)}"\s*:', text)
    if match is None:
        return None
    start = match.start()
    if sub:
        inner = re.compile(rf'"{re.escape(sub)}"\s*:').search(text, match.end())
        start = inner.start() if inner else start
    return text.count("\n", 0, start) + 1


# --------------------------------------------------------------------------------------------------
# Validation


def _build(merged: _Merged) -> OrchestratorConfig:
    _check_unknown(merged, merged.values, "", _TOP_KEYS)
    cache = _object(merged, "ArtifactsCache")
    _object(merged, "HttpsClient")
    server = _artifact_server(merged, _object(merged, "ArtifactServer"))
    return OrchestratorConfig(
        verify_keys=_verify_keys(merged),
        interface_timeout_seconds=_integer(merged, "InterfaceTimeoutSeconds", low=1) or DEFAULT_TIMEOUT,
        log_level=_log_level(merged),
        topology_components=_topology_components(merged),
        artifacts_cache_max_size_bytes=_integer(merged, "ArtifactsCache.MaxSizeBytes", low=0, within=cache)
        or 0,
        raw=dict(merged.values),
        artifacts_cache_enabled=_boolean(merged, "ArtifactsCache.Enabled", cache.get("Enabled", False)),
        artifacts_cache_path=_path(merged, "ArtifactsCache.Path", cache.get("Path")),
        manifest_store=_path(merged, "ManifestStore", merged.values.get("ManifestStore")),
        server_certificate=_path(merged, "ServerCertificate", merged.values.get("ServerCertificate")),
        artifact_server=server,
        device_type_file=_path(merged, "DeviceTypeFile", merged.values.get("DeviceTypeFile"))
        or DEFAULT_DEVICE_TYPE_FILE,
        warnings=tuple(merged.warnings),
    )


def _topology_components(merged: _Merged) -> Path | None:
    """`ManifestComponents` is the old name Mender's older tooling writes; one of the two."""
    new, old = merged.values.get("TopologyComponents"), merged.values.get("ManifestComponents")
    if new is not None and old is not None:
        merged.report("ManifestComponents", "is the old name of TopologyComponents: set only one of them")
        return None
    if old is not None:
        return _path(merged, "ManifestComponents", old)
    return _path(merged, "TopologyComponents", new)


def _artifact_server(merged: _Merged, values: Mapping[str, object]) -> ArtifactServerConfig | None:
    if not values:
        return None
    url = _string(merged, "ArtifactServer.URL", values.get("URL"))
    if url is None:
        merged.report("ArtifactServer.URL", "is required when ArtifactServer is set")
    elif not re.match(r"https://[^/]|http://(127\.0\.0\.1|localhost|\[::1\])[:/]?", url):
        merged.report(
            "ArtifactServer.URL", f"must be an https:// URL (plain http only on loopback), got {url!r}"
        )
        url = None
    token = _string(merged, "ArtifactServer.Token", values.get("Token"))
    token_file = _path(merged, "ArtifactServer.TokenFile", values.get("TokenFile"))
    if token is not None and token_file is not None:
        merged.report("ArtifactServer.TokenFile", "Token and TokenFile are exclusive")
    elif token_file is not None:
        token = _token_file(merged, token_file)
    timeout = _integer(merged, "ArtifactServer.TimeoutSeconds", low=1, within=values) or 30
    retries = _integer(merged, "ArtifactServer.Retries", low=0, within=values)
    if url is None:
        return None
    return ArtifactServerConfig(url, token, token_file, timeout, 3 if retries is None else retries)


def _token_file(merged: _Merged, path: Path) -> str | None:
    """Read with the configuration, so an unreadable file is a config error naming it, found
    by every command up front, and not a crash in the middle of an ingest or an install."""
    key = "ArtifactServer.TokenFile"
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_TOKEN_BYTES + 1)
    except OSError as exc:
        merged.report(key, f"cannot read {path}: {exc.strerror or exc}")
        return None
    if len(data) > MAX_TOKEN_BYTES:
        merged.report(key, f"{path} is larger than {MAX_TOKEN_BYTES} bytes")
        return None
    try:
        text = data.decode("ascii").strip()  # it goes into an HTTP header as it is
    except UnicodeDecodeError:
        merged.report(key, f"{path} does not hold an ASCII token")
        return None
    if not text:
        merged.report(key, f"{path} is empty")
    return text or None


def _check_unknown(
    merged: _Merged, values: Mapping[str, object], prefix: str, allowed: tuple[str, ...]
) -> None:
    for key in values:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.7)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(allowed)}"
            merged.warn(prefix + key, f"unknown key, ignored{hint}")


def _object(merged: _Merged, key: str) -> dict[str, object]:
    value = merged.values.get(key, {})
    if not isinstance(value, dict):
        merged.report(key, f"must be a JSON object, got {_kind(value)}")
        return {}
    _check_unknown(merged, value, f"{key}.", _NESTED[key])
    for sub in ("Certificate", "Key", "SSLEngine") if key == "HttpsClient" else ():
        _string(merged, f"{key}.{sub}", value.get(sub))
    return value


def _verify_keys(merged: _Merged) -> tuple[Path, ...]:
    one, many = merged.values.get("ArtifactVerifyKey"), merged.values.get("ArtifactVerifyKeys")
    if one is not None and many is not None:
        files = sorted({merged.origin["ArtifactVerifyKey"].file, merged.origin["ArtifactVerifyKeys"].file})
        merged.report(
            "ArtifactVerifyKeys",
            f"ArtifactVerifyKey and ArtifactVerifyKeys are exclusive (set in {', '.join(files)})",
        )
        return ()
    if one is not None:
        path = _path(merged, "ArtifactVerifyKey", one)
        return (path,) if path is not None else ()
    return _path_list(merged, "ArtifactVerifyKeys", many)


def _path_list(merged: _Merged, key: str, value: object) -> tuple[Path, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        merged.report(key, f"must be a non-empty list of key file paths, got {_kind(value)}")
        return ()
    paths = [_path(merged, f"{key}[{i}]", item) for i, item in enumerate(value)]
    return tuple(p for p in paths if p is not None)


def _string(merged: _Merged, key: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip():
        return value
    merged.report(key, f"must be a non-empty string, got {_kind(value)}")
    return None


def _path(merged: _Merged, key: str, value: object) -> Path | None:
    text = _string(merged, key, value)
    return Path(text) if text is not None else None


def _integer(
    merged: _Merged, key: str, *, low: int, within: Mapping[str, object] | None = None
) -> int | None:
    value = (merged.values if within is None else within).get(key.rpartition(".")[2])
    if value is None:
        return None
    # JSON `true` is a Python bool, and bool is an int: reject it explicitly.
    if isinstance(value, int) and not isinstance(value, bool) and value >= low:
        return value
    merged.report(key, f"must be an integer >= {low}, got {_kind(value)}")
    return None


def _boolean(merged: _Merged, key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    merged.report(key, f"must be true or false, got {_kind(value)}")
    return False


def _log_level(merged: _Merged) -> str:
    value = merged.values.get("LogLevel", "info")
    if isinstance(value, str) and value.lower() in LOG_LEVELS:
        return value.lower()
    merged.report("LogLevel", f"must be one of {', '.join(LOG_LEVELS)}, got {_kind(value)}")
    return "info"


_KINDS: Mapping[type, Callable[[object], str]] = {
    bool: lambda v: f"the boolean {str(v).lower()}",
    str: lambda v: f"the string {v!r}",
    list: lambda v: "an empty list" if not v else "a list",
    dict: lambda v: "an object",
}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    describe = _KINDS.get(type(value))
    if describe is not None:
        return describe(value)
    if isinstance(value, float) and not math.isfinite(value):
        return f"the non-finite number {value}"
    return f"the number {value}"
