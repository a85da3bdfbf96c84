"""The demo update interfaces (demo/interfaces), driven directly as the orchestrator would run them.

Each test builds its own demo root with `demo/setup --no-artifacts` and runs the interfaces with a
clean environment, the work dir as cwd, and the Mender File-API streaming done by hand.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
CALL_LINE = re.compile(r"^\d+\.\d{9} (\S+) (\S+) (start|end (\d+))$")
TIMELINE_LINE = re.compile(r"^\d+\.\d{9} (\S+) (\S+) -> (\S+)$")
TYPES = {"G13": "gateway", "R998": "rtos", "R456": "rtos"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    demo_root = tmp_path / "demo"
    subprocess.run([REPO / "demo" / "setup", "--no-artifacts", demo_root], check=True, capture_output=True)
    return demo_root


def make_workdir(root: Path, name: str, artifact_name: str) -> Path:
    wd = root / "work" / name
    (wd / "header").mkdir(parents=True)
    (wd / "tmp").mkdir()
    (wd / "header" / "artifact_name").write_text(f"{artifact_name}\n")
    return wd


def argv(root: Path, state: str, device: str, wd: Path, *args: str) -> list[str]:
    iface = TYPES.get(device, "rtos")
    return [str(root / "share/interfaces/v1" / iface), state, str(wd), iface, device, *args]


def call(
    root: Path, state: str, device: str, wd: Path | None = None, *args: str
) -> subprocess.CompletedProcess[str]:
    wd = wd or root
    return subprocess.run(
        argv(root, state, device, wd, *args),
        cwd=wd,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=20,
    )


def ok(root: Path, state: str, device: str, wd: Path | None = None) -> str:
    result = call(root, state, device, wd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def version(root: Path, device: str) -> str:
    return (root / "devices" / device / "version").read_text().strip()


def write_fifo(path: Path, data: bytes, proc: subprocess.Popen[str]) -> None:
    """Open a FIFO for writing once the interface reads it (fails if the interface exits first)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO or proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"interface never opened {path.name}") from exc
            time.sleep(0.002)
    os.set_blocking(fd, True)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def stream_download(
    root: Path,
    device: str,
    wd: Path,
    payloads: dict[str, bytes],
    *,
    state: str = "Download",
    sizes: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run Download the way the orchestrator does: stream-next names each stream, then an empty read."""
    (wd / "streams").mkdir()
    os.mkfifo(wd / "stream-next")
    for name in payloads:
        os.mkfifo(wd / "streams" / name)
    proc = subprocess.Popen(
        argv(root, state, device, wd),
        cwd=wd,
        env=CLEAN_ENV,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for name, data in payloads.items():
            line = f"streams/{name} {len(data)}" if sizes else f"streams/{name}"
            write_fifo(wd / "stream-next", f"{line}\n".encode(), proc)
            write_fifo(wd / "streams" / name, data, proc)
        write_fifo(wd / "stream-next", b"", proc)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def download(root: Path, device: str, artifact_name: str) -> Path:
    wd = make_workdir(root, device, artifact_name)
    result = stream_download(
        root, device, wd, {f"{artifact_name}.img": f"firmware {artifact_name}\n".encode()}
    )
    assert result.returncode == 0, result.stderr
    return wd


def run_states(root: Path, device: str, wd: Path, *states: str) -> None:
    for state in states:
        ok(root, state, device, wd)


def timeline(root: Path) -> list[tuple[str, str, str]]:
    lines = (root / "timeline.log").read_text().splitlines()
    matches = [TIMELINE_LINE.match(line) for line in lines]
    assert all(matches), lines
    return [(m[1], m[2], m[3]) for m in matches if m]


def calls(root: Path) -> list[tuple[str, str, str]]:
    lines = (root / "calls.log").read_text().splitlines()
    matches = [CALL_LINE.match(line) for line in lines]
    assert all(matches), lines
    return [(m[1], m[2], m[3]) for m in matches if m]


# Queries ---------------------------------------------------------------------------------------


def test_it_answers_identity_provides_and_inventory(root: Path) -> None:
    assert ok(root, "Identity", "G13") == "id=G13\n"
    assert ok(root, "Provides", "G13") == "rootfs-image.gateway.version=gateway-v1\n"
    assert ok(root, "Inventory", "G13") == "device_id=G13\nversion=gateway-v1\n"
    assert ok(root, "Identity", "R456") == "id=R456\n"
    assert ok(root, "Provides", "R998") == "rootfs-image.rtos.version=rtos-v1\n"
    assert ok(root, "Inventory", "R998") == "device_id=R998\nversion=rtos-v1\n"


def test_it_appends_extra_provides(root: Path) -> None:
    (root / "devices/R998/extra-provides").write_text("board.rev=B\nbootloader=2.1\n")
    assert ok(root, "Provides", "R998") == "rootfs-image.rtos.version=rtos-v1\nboard.rev=B\nbootloader=2.1\n"


@pytest.mark.parametrize(
    ("device", "query", "answer"),
    [
        ("G13", "NeedsArtifactReboot", "Yes\n"),
        ("R998", "NeedsArtifactReboot", "No\n"),
        ("G13", "SupportsRollback", "Yes\n"),
        ("R456", "SupportsRollback", "Yes\n"),
        ("G13", "NeedsUnpackedArtifact", ""),
        ("R998", "ProvidePayloadFileSizes", ""),
    ],
)
def test_it_answers_queries_with_defaults(root: Path, device: str, query: str, answer: str) -> None:
    assert ok(root, query, device) == answer


def test_it_answers_from_override_files_verbatim(root: Path) -> None:
    answers = root / "devices/R998/answers"
    (answers / "NeedsArtifactReboot").write_text("Automatic\n")
    (answers / "SupportsRollback").write_text("")
    (answers / "NeedsUnpackedArtifact").write_text("No")
    (answers / "Provides").write_text("rootfs-image.version=custom\nfoo=bar\n")
    (answers / "Identity").write_text("id=G13\n")
    assert ok(root, "NeedsArtifactReboot", "R998") == "Automatic\n"
    assert ok(root, "SupportsRollback", "R998") == ""
    assert ok(root, "NeedsUnpackedArtifact", "R998") == "No"
    assert ok(root, "Provides", "R998") == "rootfs-image.version=custom\nfoo=bar\n"
    assert ok(root, "Identity", "R998") == "id=G13\n"
    assert ok(root, "SupportsRollback", "R456") == "Yes\n"


# Argv, unknown states, fault and timing control ------------------------------------------------


def test_it_ignores_unknown_states(root: Path) -> None:
    for device in ("G13", "R998", "NO-SUCH-DEVICE"):
        result = call(root, "SomeFutureState", device)
        assert (result.returncode, result.stdout) == (0, "")
    assert not list((root / "devices/G13").glob("SomeFutureState.*"))


def test_it_fails_for_an_unknown_or_missing_device(root: Path) -> None:
    result = call(root, "Provides", "R111")
    assert result.returncode == 1
    assert "unknown device 'R111'" in result.stderr
    iface = str(root / "share/interfaces/v1/rtos")
    result = subprocess.run(
        [iface, "Provides", str(root), "rtos"], env=CLEAN_ENV, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "no component/device ID" in result.stderr


def test_it_records_started_and_argv_in_both_argv_forms(root: Path) -> None:
    call(root, "Provides", "R456", None, "arg1", "--flag=x")
    device = root / "devices/R456"
    assert (device / "Provides.STARTED").read_text() == ""
    assert (device / "Provides.ARGV").read_text().splitlines() == [
        "Provides",
        str(root),
        "rtos",
        "R456",
        "arg1",
        "--flag=x",
    ]


def test_it_fails_a_state_or_query_with_a_fail_file(root: Path) -> None:
    (root / "devices/R456/Provides.FAIL").write_text("bus timeout\n")
    result = call(root, "Provides", "R456")
    assert (result.returncode, result.stdout) == (1, "")
    assert "injected failure" in result.stderr
    assert "bus timeout" in result.stderr
    (root / "devices/R456/ArtifactInstall.FAIL").touch()
    wd = download(root, "R456", "rtos-v2")
    assert call(root, "ArtifactInstall", "R456", wd).returncode == 1
    assert version(root, "R456") == "rtos-v1"
    assert not (root / "devices/R456/previous").exists()


def test_it_fails_a_counted_number_of_times(root: Path) -> None:
    (root / "devices/G13/ArtifactVerifyRollbackReboot.FAILCOUNT").write_text("2\n")
    codes = [call(root, "ArtifactVerifyRollbackReboot", "G13").returncode for _ in range(3)]
    assert codes == [1, 1, 0]


def test_it_sleeps_and_writes_started_before(root: Path) -> None:
    (root / "devices/R998/Identity.SLEEP").write_text("0.3\n")
    began = time.monotonic()
    assert ok(root, "Identity", "R998") == "id=R998\n"
    assert time.monotonic() - began >= 0.3


def test_it_can_be_killed_while_sleeping_and_logs_the_end(root: Path) -> None:
    device = root / "devices/G13"
    (device / "ArtifactInstall.SLEEP").write_text("30\n")
    proc = subprocess.Popen(
        argv(root, "ArtifactInstall", "G13", root),
        cwd=root,
        env=CLEAN_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while not (device / "ArtifactInstall.STARTED").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    time.sleep(0.1)  # let it reach the sleep
    proc.terminate()
    began = time.monotonic()
    proc.communicate(timeout=5)  # returns quickly: the sleep holds none of our pipes
    assert time.monotonic() - began < 3
    assert proc.returncode == 143
    assert calls(root)[-2:] == [("G13", "ArtifactInstall", "start"), ("G13", "ArtifactInstall", "end 143")]
    assert version(root, "G13") == "gateway-v1"


# Logs ------------------------------------------------------------------------------------------


def test_it_logs_one_start_and_one_end_line_per_call(root: Path) -> None:
    ok(root, "Identity", "G13")
    (root / "devices/R998/Provides.FAIL").touch()
    call(root, "Provides", "R998")
    call(root, "Whatever", "R456")
    assert calls(root) == [
        ("G13", "Identity", "start"),
        ("G13", "Identity", "end 0"),
        ("R998", "Provides", "start"),
        ("R998", "Provides", "end 1"),
        ("R456", "Whatever", "start"),
        ("R456", "Whatever", "end 0"),
    ]


def test_it_does_not_interleave_log_lines_of_parallel_calls(root: Path) -> None:
    jobs = [(state, device) for state in ("Identity", "Provides", "Inventory") for device in TYPES] * 4
    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(lambda job: ok(root, *job), jobs))
    logged = calls(root)
    assert len(logged) == 2 * len(jobs)
    assert sum(what == "end 0" for _, _, what in logged) == len(jobs)


# Download --------------------------------------------------------------------------------------


def test_it_reads_the_streams_into_tmp_without_activating(root: Path) -> None:
    wd = make_workdir(root, "G13", "gateway-v2")
    payloads = {"rootfs.img": b"A" * 100_000, "extra.bin": b"B\n"}
    result = stream_download(root, "G13", wd, payloads)
    assert result.returncode == 0, result.stderr
    assert {p.name: p.read_bytes() for p in (wd / "tmp").iterdir()} == payloads
    assert version(root, "G13") == "gateway-v1"
    assert (root / "timeline.log").read_text() == ""


def test_it_checks_announced_sizes_with_download_with_file_sizes(root: Path) -> None:
    wd = make_workdir(root, "R998", "rtos-v2")
    result = stream_download(
        root, "R998", wd, {"fw.bin": b"12345"}, state="DownloadWithFileSizes", sizes=True
    )
    assert result.returncode == 0, result.stderr
    assert (wd / "tmp/fw.bin").read_bytes() == b"12345"


def test_it_fails_download_without_an_artifact_name(root: Path) -> None:
    wd = make_workdir(root, "R998", "")
    result = stream_download(root, "R998", wd, {"fw.bin": b"x"})
    assert result.returncode == 1
    assert "header/artifact_name" in result.stderr


def test_it_fails_download_for_a_foreign_component_type(root: Path) -> None:
    wd = make_workdir(root, "R998", "gateway-v2")
    iface = str(root / "share/interfaces/v1/rtos")
    result = subprocess.run(
        [iface, "Download", str(wd), "gateway", "R998"], cwd=wd, env=CLEAN_ENV, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "does not match" in result.stderr


def test_it_uses_the_files_tree_when_told_to_ignore_streams(root: Path) -> None:
    (root / "devices/R456/Download.IGNORE-STREAMS").touch()
    wd = make_workdir(root, "R456", "rtos-v2")
    assert ok(root, "Download", "R456", wd) == ""  # no FIFOs exist: it must not read any
    assert call(root, "ArtifactInstall", "R456", wd).returncode == 1  # files/ is empty
    (wd / "files").mkdir()
    (wd / "files/fw.bin").write_bytes(b"payload v2")
    ok(root, "ArtifactInstall", "R456", wd)
    assert (root / "devices/R456/payload/fw.bin").read_bytes() == b"payload v2"
    assert version(root, "R456") == "rtos-v2"


# Install, reboot, commit, rollback -------------------------------------------------------------


def test_it_updates_the_gateway_on_reboot(root: Path) -> None:
    device = root / "devices/G13"
    wd = download(root, "G13", "gateway-v2")
    ok(root, "ArtifactInstall", "G13", wd)
    assert version(root, "G13") == "gateway-v1"
    assert (device / "previous").read_text() == "gateway-v1\n"
    assert (device / "pending").read_text() == "gateway-v2\n"
    assert (device / "payload/gateway-v2.img").read_text() == "firmware gateway-v2\n"
    run_states(root, "G13", wd, "ArtifactReboot", "ArtifactVerifyReboot", "ArtifactCommit")
    assert version(root, "G13") == "gateway-v2"
    assert (device / "previous").exists()
    ok(root, "Cleanup", "G13", wd)
    assert not (device / "previous").exists()
    assert not (device / "pending").exists()
    assert timeline(root) == [("G13", "gateway-v1", "gateway-v2")]
    assert ok(root, "Provides", "G13") == "rootfs-image.gateway.version=gateway-v2\n"


def test_it_updates_an_rtos_board_at_install(root: Path) -> None:
    wd = download(root, "R998", "rtos-v2")
    ok(root, "ArtifactInstall", "R998", wd)
    assert version(root, "R998") == "rtos-v2"
    run_states(root, "R998", wd, "ArtifactCommit", "Cleanup")
    assert timeline(root) == [("R998", "rtos-v1", "rtos-v2")]
    assert not list((root / "devices/R998").glob("p*ing"))


def test_it_refuses_to_verify_a_reboot_that_did_not_happen(root: Path) -> None:
    wd = download(root, "G13", "gateway-v2")
    ok(root, "ArtifactInstall", "G13", wd)
    result = call(root, "ArtifactVerifyReboot", "G13", wd)
    assert result.returncode == 1
    assert "expected 'gateway-v2'" in result.stderr
    assert call(root, "ArtifactCommit", "G13", wd).returncode == 1


def test_it_rolls_the_gateway_back_with_a_second_reboot(root: Path) -> None:
    wd = download(root, "G13", "gateway-v2")
    run_states(root, "G13", wd, "ArtifactInstall", "ArtifactReboot", "ArtifactVerifyReboot", "ArtifactCommit")
    ok(root, "ArtifactRollback", "G13", wd)
    assert version(root, "G13") == "gateway-v2"  # running until the rollback reboot
    run_states(
        root,
        "G13",
        wd,
        "ArtifactRollbackReboot",
        "ArtifactVerifyRollbackReboot",
        "ArtifactFailure",
        "Cleanup",
    )
    assert version(root, "G13") == "gateway-v1"
    assert timeline(root) == [("G13", "gateway-v1", "gateway-v2"), ("G13", "gateway-v2", "gateway-v1")]


def test_it_rolls_back_an_rtos_board_after_its_commit(root: Path) -> None:
    wd = download(root, "R998", "rtos-v2")
    run_states(root, "R998", wd, "ArtifactInstall", "ArtifactCommit")
    ok(root, "ArtifactRollback", "R998", wd)
    assert version(root, "R998") == "rtos-v1"
    run_states(root, "R998", wd, "ArtifactFailure", "Cleanup")
    assert timeline(root) == [("R998", "rtos-v1", "rtos-v2"), ("R998", "rtos-v2", "rtos-v1")]


def test_it_rolls_back_an_install_that_never_rebooted(root: Path) -> None:
    wd = download(root, "G13", "gateway-v2")
    ok(root, "ArtifactInstall", "G13", wd)
    run_states(root, "G13", wd, "ArtifactRollback", "ArtifactRollbackReboot", "ArtifactVerifyRollbackReboot")
    assert version(root, "G13") == "gateway-v1"
    assert timeline(root) == []


def test_it_has_nothing_to_roll_back_without_an_install(root: Path) -> None:
    result = call(root, "ArtifactRollback", "R456")
    assert result.returncode == 0
    assert "nothing to roll back" in result.stderr
    assert version(root, "R456") == "rtos-v1"


def test_it_keeps_the_rollback_target_when_install_runs_again(root: Path) -> None:
    wd = download(root, "R456", "rtos-v2")
    run_states(root, "R456", wd, "ArtifactInstall", "ArtifactInstall", "ArtifactRollback")
    assert version(root, "R456") == "rtos-v1"


def test_it_activates_on_verify_when_the_reboot_is_automatic(root: Path) -> None:
    (root / "devices/G13/answers/NeedsArtifactReboot").write_text("Automatic\n")
    wd = download(root, "G13", "gateway-v3")
    ok(root, "ArtifactInstall", "G13", wd)
    assert version(root, "G13") == "gateway-v1"
    run_states(root, "G13", wd, "ArtifactVerifyReboot", "ArtifactCommit", "ArtifactRollback")
    assert version(root, "G13") == "gateway-v3"
    ok(root, "ArtifactVerifyRollbackReboot", "G13", wd)
    assert version(root, "G13") == "gateway-v1"


def test_it_follows_an_overridden_reboot_answer(root: Path) -> None:
    (root / "devices/G13/answers/NeedsArtifactReboot").write_text("No\n")
    wd = download(root, "G13", "gateway-v2")
    ok(root, "ArtifactInstall", "G13", wd)
    assert version(root, "G13") == "gateway-v2"


def test_it_finds_its_devices_next_to_a_symlinked_interface(root: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    (other / "share/interfaces/v1").mkdir(parents=True)
    (other / "devices/R1").mkdir(parents=True)
    (other / "devices/R1/version").write_text("rtos-v7\n")
    link = other / "share/interfaces/v1/rtos"
    link.symlink_to(root / "share/interfaces/v1/rtos")
    result = subprocess.run(
        [str(link), "Provides", str(other), "rtos", "R1"], env=CLEAN_ENV, capture_output=True, text=True
    )
    assert result.stdout == "rootfs-image.rtos.version=rtos-v7\n"
    assert (other / "calls.log").exists()


# The walk-through's sequence, driven by hand in the protocol's order ----------------------------


ROLLBACK_WITH_REBOOT = (
    "ArtifactRollback",
    "ArtifactRollbackReboot",
    "ArtifactVerifyRollbackReboot",
    "ArtifactFailure",
)


def apply(root: Path, version: int, *, failing_commit: str | None = None) -> None:
    """Order group 10 (gateway) then 20 (rtos); on a Commit failure roll back newest group first."""
    if failing_commit:
        (root / "devices" / failing_commit / "ArtifactCommit.FAIL").touch()
    work = {d: download(root, d, f"{TYPES[d]}-v{version}") for d in TYPES}
    run_states(root, "G13", work["G13"], "ArtifactInstall", "ArtifactReboot", "ArtifactVerifyReboot")
    for device in ("R998", "R456"):
        ok(root, "ArtifactInstall", device, work[device])
    failed = [d for d in ("G13", "R998", "R456") if call(root, "ArtifactCommit", d, work[d]).returncode != 0]
    if failed:
        for device in ("R998", "R456"):
            run_states(root, device, work[device], "ArtifactRollback", "ArtifactFailure")
        run_states(root, "G13", work["G13"], *ROLLBACK_WITH_REBOOT)
    for device in TYPES:
        ok(root, "Cleanup", device, work[device])
    for path in work.values():
        shutil.rmtree(path)


def test_it_supports_the_walk_through_sequence(root: Path) -> None:
    apply(root, 2)
    assert {d: version(root, d) for d in TYPES} == {"G13": "gateway-v2", "R998": "rtos-v2", "R456": "rtos-v2"}
    apply(root, 3, failing_commit="R456")
    assert {d: version(root, d) for d in TYPES} == {"G13": "gateway-v2", "R998": "rtos-v2", "R456": "rtos-v2"}
    running = dict.fromkeys(TYPES, 1)
    for device, _old, new in timeline(root):
        running[device] = int(new.rsplit("-v", 1)[1])
        assert running["G13"] >= max(running["R998"], running["R456"]), running
    assert len(timeline(root)) == 3 + 3 + 3


# Setup ------------------------------------------------------------------------------------------


def test_setup_builds_devices_on_v1_and_the_system_files(root: Path) -> None:
    assert {d: version(root, d) for d in TYPES} == {"G13": "gateway-v1", "R998": "rtos-v1", "R456": "rtos-v1"}
    assert os.access(root / "share/interfaces/v1/gateway", os.X_OK)
    assert (root / "datastore/topology.yaml").read_text() == (REPO / "demo/system/topology.yaml").read_text()
    names = sorted(p.name for p in (root / "system").glob("*.yaml"))
    assert names == [
        "manifest-v1.yaml",
        "manifest-v2.yaml",
        "manifest-v3.yaml",
        "seed-manifest-v1.yaml",
        "seed-manifest-v2.yaml",
        "seed-manifest-v3.yaml",
        "topology.yaml",
    ]
    assert (root / "calls.log").read_text() == (root / "timeline.log").read_text() == ""


def test_setup_wipes_its_own_root_but_refuses_a_foreign_directory(root: Path, tmp_path: Path) -> None:
    (root / "devices/G13/version").write_text("gateway-v9\n")
    subprocess.run([REPO / "demo/setup", "--no-artifacts", root], check=True, capture_output=True)
    assert version(root, "G13") == "gateway-v1"
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    result = subprocess.run([REPO / "demo/setup", "--no-artifacts", foreign], capture_output=True, text=True)
    assert result.returncode == 2
    assert (foreign / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("version_number", [1, 2, 3])
def test_the_manifests_describe_the_same_system_in_both_forms(version_number: int) -> None:
    system = REPO / "demo/system"
    topology = yaml.safe_load((system / "topology.yaml").read_text())
    current = yaml.safe_load((system / f"manifest-v{version_number}.yaml").read_text())
    seed = yaml.safe_load((system / f"seed-manifest-v{version_number}.yaml").read_text())
    assert (topology["kind"], current["kind"], seed["kind"]) == ("topology", "manifest", "update_manifest")
    assert topology["system_type"] in current["system_types_compatible"]
    assert current["name"] == seed["version"] == f"system-core-v{version_number}"
    ids = [c["interface_args"][0] for c in topology["components"]]
    assert sorted(ids) == sorted(c["id"] for c in seed["components"]) == sorted(TYPES)
    for ctype, order in (("gateway", 10), ("rtos", 20)):
        path = f"artifacts/{ctype}-v{version_number}.mender"
        for manifest in (current, seed):
            entry = manifest["component_types"][ctype]
            assert (entry["artifact_path"], entry["update_strategy"]["order"]) == (path, order)
        assert current["component_types"][ctype]["artifact_name"] == f"{ctype}-v{version_number}"


def test_setup_installs_the_policy_example_off_and_its_health_check(root: Path) -> None:
    """docs/policy.md: the example is there to switch on, not on; its check reads the boards."""
    assert (root / "system/policy.yaml.example").read_text() == (
        REPO / "demo/system/policy.yaml.example"
    ).read_text()
    assert not (root / "datastore/policy.yaml").exists()
    check = [str(root / "share/health-checks/can-bus-check"), "can0", "R998", "R456"]
    passing = subprocess.run(check, capture_output=True, text=True)
    assert passing.returncode == 0 and "can0: board R456 answers, running rtos-v1" in passing.stdout
    (root / "devices/R456/can-bus.FAIL").touch()
    failing = subprocess.run(check, capture_output=True, text=True)
    assert failing.returncode == 1 and "can0: board R456 does not answer (running rtos-v1)" in failing.stderr
