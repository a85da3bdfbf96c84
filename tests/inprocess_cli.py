"""The command line run inside the test process: what `bin/mender-orchestrator ARGS` does, with
the environment it would get, minus the 0.6-1 s of starting Python and Django each time.

A subprocess reads its settings from its environment once; here the settings module is run
again on the given environment and the differences are overridden for the call, the `default`
database is pointed at the one those settings name (the demo system's own SQLite copy or
PostgreSQL clone) for this thread and every thread the command starts, logging is configured
as the subprocess would configure it (to the captured stderr) and put back afterwards, and
SystemExit / an uncaught exception become the exit code a process would have had.

Each call is a new process as far as owner tokens go (updates/liveness.py): a deployment left
RUNNING by a call that returned (reboot required, say) belongs to a dead owner afterwards, as it
would once the subprocess had exited. What needs a real process (a kill, a crash, the update
module calling us, the engine-only fast path's import contract) stays a subprocess: `run(...,
subprocess=True)` on the demo system.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.config
import os
import runpy
import subprocess
import sys
import threading
import traceback
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test.utils import override_settings

ROOT = Path(__file__).resolve().parents[1]
CLI = str(ROOT / "bin" / "mender-orchestrator")
SETTINGS_FILE = ROOT / "orchestrator_site" / "settings.py"


def run_cli(
    argv: Sequence[str], env: Mapping[str, str], *, db_blocker: Any, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """`bin/mender-orchestrator *argv` with `env` as its whole environment, in this process."""
    out, err = io.StringIO(), io.StringIO()
    with (
        _environ(env),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        _stdin(stdin),
    ):
        code = _main(list(argv), db_blocker)
    return subprocess.CompletedProcess([CLI, *argv], code, out.getvalue(), err.getvalue())


def _main(argv: list[str], db_blocker: Any) -> int:
    """manage.py's path for `orchestrator ARGS`: the engine-only commands first, then Django's."""
    try:
        from updates.launch import serve

        code = serve(argv)
        if code is not None:
            return code
        try:
            fresh = _settings_from_env()
        except ImproperlyConfigured as exc:
            print(f"mender-orchestrator: {exc}", file=sys.stderr)
            return 2
        with (
            _settings(fresh),
            _database(fresh["DATABASES"]["default"]),
            db_blocker.unblock(),
            _logging(fresh["LOGGING"]),
            _new_process_identity(),
            _joins_new_threads(),
        ):
            from updates.cli import main

            return main(argv)
    except SystemExit as exc:
        return _exit_code(exc.code)
    except Exception:  # as the interpreter would: the traceback on stderr, exit 1
        traceback.print_exc()
        return 1


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _settings_from_env() -> dict[str, Any]:
    """What orchestrator_site/settings.py makes of the current environment."""
    namespace = runpy.run_path(str(SETTINGS_FILE), run_name="orchestrator_site._settings_in_process")
    return {k: v for k, v in namespace.items() if k.isupper()}


@contextlib.contextmanager
def _settings(fresh: dict[str, Any]) -> Iterator[None]:
    changed = {k: v for k, v in fresh.items() if not hasattr(settings, k) or getattr(settings, k) != v}
    with warnings.catch_warnings():
        # "Overriding setting DATABASES can lead to unexpected behavior": _database handles it.
        warnings.simplefilter("ignore", UserWarning)
        override = override_settings(**changed)
        override.enable()
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            override.disable()


@contextlib.contextmanager
def _database(db: dict[str, Any]) -> Iterator[None]:
    """The `default` alias on `db` for the call; the test's own connection is left untouched."""
    local = connections._connections  # type: ignore[attr-defined]  # its thread-local store
    saved_conn = getattr(local, "default", None)
    saved_settings = connections.settings["default"]
    if saved_conn is not None:
        delattr(local, "default")
    connections.settings["default"] = connections.configure_settings({"default": dict(db)})["default"]
    try:
        yield
    finally:
        conn = getattr(local, "default", None)
        if conn is not None:
            conn.close()
            delattr(local, "default")
        connections.settings["default"] = saved_settings
        if saved_conn is not None:
            local.default = saved_conn


@contextlib.contextmanager
def _logging(config: dict[str, Any]) -> Iterator[None]:
    """The subprocess's logging (to the redirected stderr); every logger as it was afterwards."""
    manager = logging.Logger.manager
    loggers: list[logging.Logger] = [logging.getLogger()] + [
        lg for lg in manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    saved = [(lg, lg.level, list(lg.handlers), list(lg.filters), lg.propagate, lg.disabled) for lg in loggers]
    logging.config.dictConfig(config)
    try:
        yield
    finally:
        known = {id(lg) for lg in loggers}
        for lg in manager.loggerDict.values():
            if isinstance(lg, logging.Logger) and id(lg) not in known:
                lg.handlers.clear()
                lg.setLevel(logging.NOTSET)
                lg.propagate = True
        for lg, level, handlers, filters, propagate, disabled in saved:
            lg.setLevel(level)
            lg.handlers[:] = handlers
            lg.filters[:] = filters
            lg.propagate = propagate
            lg.disabled = disabled


@contextlib.contextmanager
def _new_process_identity() -> Iterator[None]:
    """Owner tokens of this call name a process start that never matches this process again."""
    from updates import liveness

    original = liveness.owner_token
    token = f"{liveness.host_id()}/{liveness._boot_id()}:{os.getpid()}:in-process-{uuid.uuid4().hex[:8]}"

    def owner_token() -> str:
        return token

    patched = [m for m in list(sys.modules.values()) if getattr(m, "owner_token", None) is original]
    for module in patched:
        module.owner_token = owner_token  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module in patched:
            module.owner_token = original  # type: ignore[attr-defined]


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _stdin(text: str) -> Iterator[None]:
    saved = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        yield
    finally:
        sys.stdin = saved


@contextlib.contextmanager
def _joins_new_threads() -> Iterator[None]:
    """An interpreter waits for its non-daemon threads before it exits: so does a call."""
    before = set(threading.enumerate())
    try:
        yield
    finally:
        for thread in threading.enumerate():
            if thread not in before and not thread.daemon:
                thread.join(timeout=60)
