from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from updates.engine.interface import (
    CAPTURE_LIMIT,
    CLEAN_PATH,
    InterfaceError,
    InterfaceNotFound,
    InterfaceRunner,
    ProtocolError,
    parse_identity,
    parse_query_answer,
)

INTERFACES = Path(__file__).parent / "interfaces"


def install(data_dir: Path, name: str, *, layout: str = "interfaces", as_name: str | None = None) -> Path:
    """Copy a test interface into the data dir (mode set here, so a lost exec bit can't matter)."""
    target = data_dir / layout / "v1" / (as_name or name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(INTERFACES / name, target)
    target.chmod(0o755)
    return target


def runner_with(tmp_path: Path, *names: str, **kwargs: Any) -> InterfaceRunner:
    for name in names:
        install(tmp_path / "data", name)
    return InterfaceRunner(data_dir=tmp_path / "data", **kwargs)


def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work dir"  # a space, to prove nothing splits it
    path.mkdir(exist_ok=True)
    return path


def argv_for(runner: InterfaceRunner, name: str, state: str, work: Path, *args: str, **kw: str) -> list[str]:
    """argv for component type "t"; pass component_id= for the seed form."""
    ident = kw.get("component_id")
    return runner.argv(
        interface=name, state=state, workdir=work, component_type="t", component_id=ident, args=args
    )


def is_gone(pid: int) -> bool:
    """Dead or a zombie (a zombie's parent may be an init that reaps slowly)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def wait_gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if is_gone(pid):
            return True
        time.sleep(0.02)
    return is_gone(pid)


def read_pids(path: Path) -> list[int]:
    deadline = time.monotonic() + 5
    while not path.exists() or not path.read_text().endswith("\n"):
        assert time.monotonic() < deadline, "interface never wrote its pids"
        time.sleep(0.01)
    return [int(p) for p in path.read_text().split()]


# ---- argv, cwd, env


def test_it_passes_the_seed_argv_form_and_runs_in_the_workdir(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, "log-call")
    work = workdir(tmp_path)
    argv = argv_for(runner, "log-call", "ArtifactInstall", work, "x", "y", component_id="board-1")
    result = runner.call(argv, cwd=work)
    logged = json.loads((work / "call.json").read_text())
    path = str(tmp_path / "data/interfaces/v1/log-call")
    assert argv == [path, "ArtifactInstall", str(work), "t", "board-1", "x", "y"]
    assert logged["argv"] == argv
    assert logged["cwd"] == str(work)
    assert result.ok and result.exit_code == 0 and not result.timed_out


def test_it_passes_the_current_argv_form_without_a_component_id(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, "log-call")
    work = workdir(tmp_path)
    runner.call(argv_for(runner, "log-call", "Identity", work, "a"), cwd=work)
    assert json.loads((work / "call.json").read_text())["argv"][1:] == ["Identity", str(work), "t", "a"]


def test_it_runs_with_a_clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_TEST_CANARY", "must-not-leak")
    runner = runner_with(tmp_path, "log-call", extra_env={"MENDER_ORCHESTRATOR_DATA_DIR": "/data"})
    work = workdir(tmp_path)
    runner.call(argv_for(runner, "log-call", "Inventory", work), cwd=work)
    env = json.loads((work / "call.json").read_text())["env"]
    assert env == {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "MENDER_ORCHESTRATOR_DATA_DIR": "/data"}


def test_it_passes_args_literally_without_a_shell(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, "log-call")
    work = workdir(tmp_path)
    nasty = ["two words", "'single'", '"double"', "$(touch pwned)", "`touch pwned2`", "*", "a;touch x", ""]
    argv = argv_for(runner, "log-call", "Provides", work, *nasty, component_id="id 1")
    assert runner.call(argv, cwd=work).ok
    assert json.loads((work / "call.json").read_text())["argv"][4:] == ["id 1", *nasty]
    assert sorted(p.name for p in work.iterdir()) == ["call.json"]


def test_it_gives_the_interface_an_empty_stdin_and_captures_its_output(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, "log-call")
    work = workdir(tmp_path)
    result = runner.call([str(tmp_path / "data/interfaces/v1/log-call"), "Cleanup", str(work), "t"], cwd=work)
    assert json.loads((work / "call.json").read_text())["stdin"] == ""
    assert (result.stdout, result.stderr) == ("out line\n", "err line\n")
    assert not result.stdout_truncated and not result.stderr_truncated
    assert result.started_at <= result.ended_at


def test_it_reports_a_non_zero_exit(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, "answers")
    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / "ArtifactInstall.exit").write_text("3")
    work = workdir(tmp_path)
    result = runner.call(argv_for(runner, "answers", "ArtifactInstall", work, str(answers)), cwd=work)
    assert (result.exit_code, result.ok, result.timed_out) == (3, False, False)


def test_it_raises_an_interface_error_when_the_executable_cannot_run(tmp_path: Path) -> None:
    bad = tmp_path / "data/interfaces/v1/garbage"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x7fELF not really")
    bad.chmod(0o755)
    runner = InterfaceRunner(data_dir=tmp_path / "data")
    with pytest.raises(InterfaceError, match="garbage"):
        runner.call([str(runner.resolve("garbage")), "Identity", str(tmp_path), "t"], cwd=tmp_path)


# ---- timeout and capture


def test_it_kills_the_whole_process_group_on_timeout(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, "sleeper", timeout=0.5, kill_grace=0.5)
    work = workdir(tmp_path)
    started = time.monotonic()
    call = runner.start([str(runner.resolve("sleeper")), "ArtifactInstall", str(work), "t"], cwd=work)
    leader, child = read_pids(work / "pids")
    result = call.wait()
    assert result.timed_out and result.exit_code is None and not result.ok
    assert result.stdout == "started\n"
    assert wait_gone(leader) and wait_gone(child)
    assert time.monotonic() - started < 4


def test_it_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, "sleeper", timeout=0.3, kill_grace=0.3)
    work = workdir(tmp_path)
    call = runner.start(argv_for(runner, "sleeper", "ArtifactInstall", work, "ignore-term"), cwd=work)
    leader, child = read_pids(work / "pids")
    result = call.wait()
    assert result.timed_out and result.exit_code is None
    assert wait_gone(leader) and wait_gone(child)


def test_it_keeps_only_the_head_of_stdout_and_the_tail_of_stderr(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, "spew")
    work = workdir(tmp_path)
    result = runner.call([str(runner.resolve("spew")), "Inventory", str(work), "t"], cwd=work)
    assert result.ok
    assert result.stdout_truncated and result.stderr_truncated
    assert result.stdout.startswith("HEAD-OF-STDOUT\n") and "TAIL-OF-STDOUT" not in result.stdout
    dropped = 15 + 48 * 65536 + 16 - CAPTURE_LIMIT  # what spew writes per stream, minus what we keep
    assert result.stdout.endswith(f"[output truncated: {dropped} more bytes not kept]\n")
    assert result.stderr.endswith("TAIL-OF-STDERR\n") and "HEAD-OF-STDERR" not in result.stderr
    assert result.stderr.startswith(f"[output truncated: first {dropped} bytes not kept]\n")
    assert len(result.stdout) < CAPTURE_LIMIT + 100 and len(result.stderr) < CAPTURE_LIMIT + 100


def test_it_does_not_wait_for_children_that_keep_the_pipes_open(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, "straggler")
    work = workdir(tmp_path)
    started = time.monotonic()
    result = runner.call([str(runner.resolve("straggler")), "Cleanup", str(work), "t"], cwd=work)
    os.kill(int((work / "straggler.pid").read_text()), signal.SIGKILL)
    assert result.ok and result.stdout == "done\n"
    assert time.monotonic() - started < 6


# ---- lookup


def test_it_prefers_interfaces_v1_over_the_seed_layout(tmp_path: Path) -> None:
    current = install(tmp_path, "ignore-download", as_name="rtos")
    install(tmp_path, "ignore-download", layout="update-interfaces", as_name="rtos")
    assert InterfaceRunner(data_dir=tmp_path).resolve("rtos") == current


def test_it_falls_back_to_the_seed_layout(tmp_path: Path) -> None:
    seed = install(tmp_path, "ignore-download", layout="update-interfaces", as_name="rtos")
    assert InterfaceRunner(data_dir=tmp_path).resolve("rtos") == seed


def test_it_names_the_interface_and_every_searched_path_when_missing(tmp_path: Path) -> None:
    with pytest.raises(InterfaceNotFound) as info:
        InterfaceRunner(data_dir=tmp_path).resolve("rtos")
    message = str(info.value)
    assert "'rtos'" in message
    assert str(tmp_path / "interfaces/v1/rtos") in message
    assert str(tmp_path / "update-interfaces/v1/rtos") in message


UNSAFE_NAMES = ["../rtos", "a/b", "/bin/sh", ".hidden", "..", ".", "", "x\x00y", " x", "-x", "é"]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_it_refuses_unsafe_interface_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(InterfaceNotFound, match="not a plain safe file name"):
        InterfaceRunner(data_dir=tmp_path).resolve(name)


def test_it_refuses_a_non_executable_file_without_falling_back(tmp_path: Path) -> None:
    install(tmp_path, "ignore-download", as_name="rtos").chmod(0o644)
    install(tmp_path, "ignore-download", layout="update-interfaces", as_name="rtos")
    with pytest.raises(InterfaceNotFound, match="not an executable regular file"):
        InterfaceRunner(data_dir=tmp_path).resolve("rtos")


def test_it_refuses_a_directory(tmp_path: Path) -> None:
    (tmp_path / "interfaces/v1/rtos").mkdir(parents=True)
    with pytest.raises(InterfaceNotFound, match="not an executable regular file"):
        InterfaceRunner(data_dir=tmp_path).resolve("rtos")


# ---- query answers


@pytest.mark.parametrize(
    ("state", "stdout", "answer"),
    [
        ("NeedsUnpackedArtifact", "", "Yes"),
        ("ProvidePayloadFileSizes", "", "No"),
        ("NeedsArtifactReboot", "", "No"),
        ("SupportsRollback", " \n\n", "No"),
        ("NeedsUnpackedArtifact", "No\n", "No"),
        ("ProvidePayloadFileSizes", "Yes", "Yes"),
        ("SupportsRollback", "\n  Yes  \n\n", "Yes"),
        ("NeedsArtifactReboot", "Yes\n", "Yes"),
        ("NeedsArtifactReboot", "Automatic\n", "Automatic"),
    ],
)
def test_it_parses_query_answers(state: str, stdout: str, answer: str) -> None:
    assert parse_query_answer(state, stdout, interface="rtos") == answer


@pytest.mark.parametrize(
    ("state", "stdout"),
    [
        ("SupportsRollback", "yes"),
        ("SupportsRollback", "Automatic"),
        ("NeedsUnpackedArtifact", "Automatic"),
        ("ProvidePayloadFileSizes", "Maybe"),
        ("NeedsArtifactReboot", "Yes\nNo\n"),
        ("NeedsArtifactReboot", "Yes\n\nYes"),
        ("SupportsRollback", "Yes please"),
    ],
)
def test_it_rejects_bad_query_answers_naming_interface_state_and_answer(state: str, stdout: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_query_answer(state, stdout, interface="rtos")
    assert "'rtos'" in str(info.value) and state in str(info.value) and repr(stdout) in str(info.value)


@pytest.mark.parametrize("state", ["Identity", "Provides", "Inventory", "Download"])
def test_it_refuses_to_parse_non_yes_no_states_as_answers(state: str) -> None:
    with pytest.raises(ValueError, match="not a Yes/No query"):
        parse_query_answer(state, "Yes", interface="rtos")


def test_it_reads_a_real_interface_answer(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, "answers")
    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / "NeedsArtifactReboot").write_text("Automatic\n")
    work = workdir(tmp_path)
    stdout = {
        state: runner.call(argv_for(runner, "answers", state, work, str(answers)), cwd=work).stdout
        for state in ("NeedsArtifactReboot", "SupportsRollback")
    }
    answered = {state: parse_query_answer(state, out, interface="t") for state, out in stdout.items()}
    assert answered == {"NeedsArtifactReboot": "Automatic", "SupportsRollback": "No"}


def test_it_parses_an_identity() -> None:
    assert parse_identity("id=board-7\n", interface="rtos") == "board-7"
    assert parse_identity("\n  id=abc  \n", interface="rtos") == "abc"


@pytest.mark.parametrize("stdout", ["", "board-7", "id=", "id=a\nid=b", "id=a b", "id=../x", "id=..", "ID=x"])
def test_it_rejects_bad_identities(stdout: str) -> None:
    with pytest.raises(ProtocolError, match="Identity"):
        parse_identity(stdout, interface="rtos")


def _open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def test_it_waits_for_the_exit_on_a_pidfd_and_closes_it(tmp_path: Path) -> None:
    """The wait for an exit is one poll on the process's pidfd (not Popen's sleep loop); each
    call closes its descriptors, so a run of thousands of calls leaks none."""
    runner = runner_with(tmp_path, "answers")
    work = workdir(tmp_path)
    argv = argv_for(runner, "answers", "SupportsRollback", work)
    runner.call(argv, cwd=work)  # the first call may open what the process keeps (e.g. a cache)
    before = _open_fds()
    running = runner.start(argv, cwd=work, threaded=False)
    assert running._pidfd is not None  # Linux >= 5.3, as on every supported appliance
    result = running.wait()
    assert result.ok and running._pidfd is None
    for _ in range(20):
        assert runner.call(argv, cwd=work).ok
    assert _open_fds() == before


def test_a_pidfd_wait_still_ends_at_the_runner_timeout(tmp_path: Path) -> None:
    runner = runner_with(tmp_path, "sleeper", timeout=0.5, kill_grace=0.2)
    work = workdir(tmp_path)
    start = time.monotonic()
    result = runner.call(argv_for(runner, "sleeper", "ArtifactInstall", work), cwd=work)
    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - start < 5
