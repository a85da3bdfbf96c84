"""Run update interfaces (v1 protocol) safely: lookup, argv, clean env, timeout, bounded capture.

An interface is an executable we do not trust to behave: it may hang, spawn children that outlive
it, or print megabytes. So every call runs in its own session (a timeout kills the whole group),
with an argv list (never a shell), a clean environment, stdin from /dev/null, and readers that
keep only a bounded part of stdout/stderr while always draining the pipes.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from updates.engine.calls import CAPTURE_LIMIT as CAPTURE_LIMIT
from updates.engine.calls import CallResult as CallResult
from updates.engine.calls import InterfaceError as InterfaceError
from updates.engine.calls import InterfaceNotFound as InterfaceNotFound
from updates.engine.calls import ProtocolError as ProtocolError
from updates.engine.calls import RunningCall as RunningCall
from updates.engine.sessions import record_session
from updates.engine.workdir import DownloadOutcome, PayloadSource, run_download

QUERY_STATES = (
    "Identity",
    "Provides",
    "Inventory",
    "NeedsUnpackedArtifact",
    "ProvidePayloadFileSizes",
    "NeedsArtifactReboot",
    "SupportsRollback",
)

CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_TIMEOUT = 14400.0
DEFAULT_KILL_GRACE = 5.0

# A plain file name: no '/', no leading '.', so no '..' either; ASCII only.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,254}")

_YES_NO_DEFAULTS: dict[str, str] = {
    "NeedsUnpackedArtifact": "Yes",
    "ProvidePayloadFileSizes": "No",
    "NeedsArtifactReboot": "No",
    "SupportsRollback": "No",
}


class InterfaceRunner:
    """Finds and runs interfaces under ``<data_dir>/interfaces/v1`` (or the seed ``update-interfaces/v1``)."""

    def __init__(
        self,
        *,
        data_dir: Path,
        timeout: float = DEFAULT_TIMEOUT,
        extra_env: Mapping[str, str] | None = None,
        kill_grace: float = DEFAULT_KILL_GRACE,
        session_log: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.timeout = timeout
        self.kill_grace = kill_grace
        self.extra_env = dict(extra_env or {})
        self.session_log = session_log

    def with_session_log(self, path: Path) -> InterfaceRunner:
        """The same runner, recording the session of every call it starts in `path`
        (`updates.engine.sessions`), so a dead runner's leftovers can be found."""
        return InterfaceRunner(
            data_dir=self.data_dir,
            timeout=self.timeout,
            extra_env=self.extra_env,
            kill_grace=self.kill_grace,
            session_log=path,
        )

    def search_paths(self, interface: str) -> list[Path]:
        return [
            self.data_dir / "interfaces" / "v1" / interface,
            self.data_dir / "update-interfaces" / "v1" / interface,
        ]

    def resolve(self, interface: str) -> Path:
        """The executable for ``interface``. The first path that exists wins; if it is not an
        executable regular file that is an error (we never fall back to another implementation)."""
        if not _SAFE_NAME.fullmatch(interface):
            raise InterfaceNotFound(f"update interface name {interface!r} is not a plain safe file name")
        candidates = self.search_paths(interface)
        searched = ", ".join(str(p) for p in candidates)
        for path in candidates:
            if not os.path.lexists(path):
                continue
            if not _is_executable_file(path):
                raise InterfaceNotFound(
                    f"update interface {interface!r}: {path} is not an executable regular file "
                    f"(searched: {searched})"
                )
            return path
        raise InterfaceNotFound(f"update interface {interface!r} not found (searched: {searched})")

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
        """Seed form passes the component id after the type; the current Mender form does not."""
        ident = [] if component_id is None else [component_id]
        path = self.resolve(interface)
        return [str(path), state, str(Path(workdir).absolute()), component_type, *ident, *args]

    def env(self) -> dict[str, str]:
        return {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", **self.extra_env}

    def start(self, argv: Sequence[str], *, cwd: Path, threaded: bool = True) -> RunningCall:
        argv_t = tuple(argv)
        try:
            proc = subprocess.Popen(
                list(argv_t),
                cwd=cwd,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except (OSError, ValueError) as exc:
            raise InterfaceError(f"cannot run {argv_t[0] if argv_t else '<empty argv>'}: {exc}") from exc
        if self.session_log is not None:
            with contextlib.suppress(OSError):  # the work dir's own problems surface elsewhere
                record_session(self.session_log, proc.pid)
        return RunningCall(proc, argv_t, timeout=self.timeout, kill_grace=self.kill_grace, threaded=threaded)

    def call(self, argv: Sequence[str], *, cwd: Path) -> CallResult:
        return self.start(argv, cwd=cwd, threaded=False).wait()

    def download(
        self, argv: Sequence[str], *, tree: Path, payloads: Iterable[PayloadSource], with_sizes: bool
    ) -> DownloadOutcome:
        """`Download` with the payloads served through the File-API FIFOs (`run_download`)."""
        return run_download(self, argv, tree=tree, payloads=payloads, with_sizes=with_sizes)


def _is_executable_file(path: Path) -> bool:
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) and os.access(path, os.X_OK)


def parse_query_answer(state: str, stdout: str, *, interface: str) -> str:
    """The answer of a Yes/No query (plus ``Automatic`` for NeedsArtifactReboot); empty → default."""
    if state not in _YES_NO_DEFAULTS:
        raise ValueError(f"{state!r} is not a Yes/No query (Identity: use parse_identity)")
    lines = [line.strip() for line in stdout.strip().splitlines() if line.strip()]
    if not lines:
        return _YES_NO_DEFAULTS[state]
    allowed = ("Yes", "No", "Automatic") if state == "NeedsArtifactReboot" else ("Yes", "No")
    if len(lines) > 1 or lines[0] not in allowed:
        raise ProtocolError(
            f"update interface {interface!r} answered {state} with {stdout!r}; "
            f"expected one line: {', '.join(allowed)}"
        )
    return lines[0]


def parse_identity(stdout: str, *, interface: str) -> str:
    """The component id from an ``Identity`` answer: exactly one line ``id=<value>``.
    The id becomes part of work-dir paths, so it must be a safe single path segment."""
    lines = [line.strip() for line in stdout.strip().splitlines() if line.strip()]
    value = lines[0][3:] if len(lines) == 1 and lines[0].startswith("id=") else ""
    if not value or value in (".", "..") or re.search(r"[\s/\\\x00]", value):
        raise ProtocolError(
            f"update interface {interface!r} answered Identity with {stdout!r}; expected one line id=<value>"
        )
    return value
