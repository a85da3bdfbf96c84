"""Calls to the interface under test, made by the engine's own runner and recorded.

`PathRunner` is the orchestrator's `InterfaceRunner` (argv list, clean environment, stdin from
/dev/null, own session, the timeout kills the group) for one executable given by path instead of
a name under `interfaces/v1/`. `Recorder` wraps it as the state machine's `Runner` and keeps
every call; in crash mode it also cuts the power (SIGKILL of the group) at the start of every
state and re-runs it, once after the cut and once more as if the cut came at its end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from updates.engine.interface import QUERY_STATES, CallResult, InterfaceRunner
from updates.engine.workdir import DownloadError, DownloadOutcome, PayloadSource, run_download

DOWNLOAD_STATES = ("Download", "DownloadWithFileSizes")
# Cleanup twice is P-CLEANUP-1's own check; the crash mode leaves it out so a Cleanup that fails
# the second time is caught by exactly that rule.
NOT_RERUN = (*QUERY_STATES, "Cleanup")


class PathRunner(InterfaceRunner):
    """The engine's runner, for the executable at `path` whatever interface name is asked for."""

    def __init__(self, path: Path, *, scratch: Path, timeout: float, kill_grace: float) -> None:
        super().__init__(data_dir=scratch, timeout=timeout, kill_grace=kill_grace)
        self.path = Path(path).absolute()

    def resolve(self, interface: str) -> Path:
        return self.path

    def with_session_log(self, path: Path) -> PathRunner:
        runner = PathRunner(
            self.path, scratch=self.data_dir, timeout=self.timeout, kill_grace=self.kill_grace
        )
        runner.session_log = path
        return runner


@dataclass(frozen=True)
class Call:
    state: str
    note: str  # "" for a plain call; "after a kill at its start", "re-run after it ended", ...
    result: CallResult | None
    error: str | None = None  # Download's reason when it failed
    tree: str = ""  # Download: "streams" or "files", the tree the interface used

    @property
    def ok(self) -> bool:
        return self.error is None and self.result is not None and self.result.ok

    @property
    def seconds(self) -> float:
        return 0.0 if self.result is None else self.result.duration

    def describe(self) -> str:
        where = f"{self.state} {self.note}".strip()
        if self.error is not None:
            return f"{where}: {self.error}"
        if self.result is None:
            return f"{where}: did not start"
        if self.result.timed_out:
            return f"{where}: timed out after {self.result.duration:.1f} s and was killed"
        tail = self.result.stderr.strip().splitlines()[-1:] if self.result.stderr.strip() else []
        return f"{where}: exit {self.result.exit_code}" + (f" ({tail[0]})" if tail else "")


class Recorder:
    """The state machine's `Runner`, recording every call; `crash=True` adds the power cuts."""

    def __init__(self, runner: PathRunner, *, crash: bool = False, kill_after: float = 0.05) -> None:
        self.runner = runner
        self.crash = crash
        self.kill_after = kill_after
        self.calls: list[Call] = []

    def argv(
        self,
        *,
        interface: str,
        state: str,
        workdir: Path,
        component_type: str,
        component_id: str | None,
        args: Sequence[str],
    ) -> list[str]:
        return self.runner.argv(
            interface=interface,
            state=state,
            workdir=workdir,
            component_type=component_type,
            component_id=component_id,
            args=args,
        )

    def with_session_log(self, path: Path) -> Recorder:
        self.runner = self.runner.with_session_log(path)
        return self

    def call(self, argv: Sequence[str], *, cwd: Path) -> CallResult:
        state = argv[1]
        if not self.crash or state in NOT_RERUN:
            return self._plain(state, "", argv, cwd)
        self._power_cut(state, argv, cwd)
        first = self._plain(state, "after a kill at its start", argv, cwd)
        if not first.ok:
            return first
        return self._plain(state, "re-run after it ended (a kill at its end)", argv, cwd)

    def _plain(self, state: str, note: str, argv: Sequence[str], cwd: Path) -> CallResult:
        result = self.runner.call(argv, cwd=cwd)
        self.calls.append(Call(state, note, result))
        return result

    def _power_cut(self, state: str, argv: Sequence[str], cwd: Path) -> None:
        """Start the state and SIGKILL its whole group shortly after: what a power cut does."""
        running = self.runner.start(argv, cwd=cwd)
        deadline = time.monotonic() + self.kill_after
        while running.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(running.pid, signal.SIGKILL)
        self.calls.append(Call(state, "killed at its start", running.wait()))

    def download(
        self, argv: Sequence[str], *, tree: Path, payloads: Iterable[PayloadSource], with_sizes: bool
    ) -> DownloadOutcome:
        state = argv[1]
        if not self.crash:
            return self._download(state, "", argv, tree, payloads, with_sizes)
        spool = _Spool(tree.parent / f".{tree.name}.spool", payloads)
        # The streams tree exists before the interface starts, as in a real Download.
        (tree / "streams").mkdir(exist_ok=True)
        if not (tree / "stream-next").exists():
            os.mkfifo(tree / "stream-next", 0o600)
        self._power_cut(state, argv, tree)
        self._download(state, "after a kill at its start", argv, tree, spool.sources(), with_sizes)
        return self._download(
            state, "re-run after it ended (a kill at its end)", argv, tree, spool.sources(), with_sizes
        )

    def _download(
        self,
        state: str,
        note: str,
        argv: Sequence[str],
        tree: Path,
        payloads: Iterable[PayloadSource],
        with_sizes: bool,
    ) -> DownloadOutcome:
        try:
            outcome = run_download(self.runner, argv, tree=tree, payloads=payloads, with_sizes=with_sizes)
        except DownloadError as exc:
            self.calls.append(Call(state, note, exc.result, exc.reason))
            raise
        self.calls.append(Call(state, note, outcome.result, tree=outcome.mode))
        return outcome


class _Spool:
    """The payloads, copied once to files so Download can be served more than once."""

    def __init__(self, directory: Path, payloads: Iterable[PayloadSource]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.files: list[tuple[str, Path]] = []
        for index, payload in enumerate(payloads):
            path = directory / str(index)
            with open(path, "wb") as out:
                while chunk := payload.read(1024 * 1024):
                    out.write(chunk)
            self.files.append((payload.name, path))

    def sources(self) -> Iterator[PayloadSource]:
        for name, path in self.files:
            yield _FileSource(name, path)


class _FileSource:
    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.size = path.stat().st_size
        self._path = path
        self._file: BinaryIO | None = None

    def read(self, n: int = -1) -> bytes:
        if self._file is None:
            self._file = open(self._path, "rb")  # noqa: SIM115 - closed at EOF below
        data: bytes = self._file.read(n)
        if not data:
            self._file.close()
        return data
