"""gunicorn's workers and its logs in the appliance's format (ORCH_LOG_FORMAT: text or json, docs/logging.md):

    gunicorn -c python:orchestrator_site.gunicorn_conf orchestrator_site.asgi:application ...

The error log goes to stderr and the access log to stdout (journald under systemd) unless
`--error-logfile` / `--access-logfile` name a file (bin/run: var/log/web.log); either way each
line has our formatter (uvicorn's workers log through the same handlers: `uvicorn.access`). The
Django app in the workers logs through settings.LOGGING (stderr).
Read by gunicorn's master, which never loads Django: so no settings import here.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.glogging import Logger  # type: ignore[import-untyped]  # no stubs shipped

from orchestrator_site.logs import FORMATTERS, LOG_FORMATS

LOG_FORMAT = os.getenv("ORCH_LOG_FORMAT", "text")
if LOG_FORMAT not in LOG_FORMATS:  # as settings.py says it, before gunicorn starts anything
    raise SystemExit(f"ORCH_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {LOG_FORMAT!r}")


class OrchestratorLogger(Logger):  # type: ignore[misc]  # (untyped base)
    """gunicorn's own handlers (file or stream, reopened on USR1 as usual), our formatter."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        formatter = FORMATTERS[LOG_FORMAT]()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)


# Slow clients (issue 22): a view reads its request's body on a view thread, so a body sent a byte
# a second holds a thread. gunicorn has no setting that bounds a body's read, so the app cuts a
# body that falls behind ORCH_BODY_MIN_BYTES_PER_SECOND after ORCH_BODY_GRACE_SECONDS
# (orchestrator_site/asgi.py; slowbody.py round the plain WSGI app), wherever gunicorn runs:
# bin/run, the systemd unit, behind nginx or not. Behind the shipped nginx a body arrives whole.
logger_class = OrchestratorLogger
errorlog = "-"
accesslog = "-"


# ----- workers (issue 25: event streams off the request threads) ----------------------------------
# uvicorn's worker serves orchestrator_site.asgi:application: the views run on ORCH_WEB_THREADS
# threads per worker (each with its own database connection), an event stream is a coroutine.
# Every launcher (bin/run, the web unit, bench/api_load.py, the live-server tests) takes it from
# here; `--workers` on their command lines (ORCH_WEB_WORKERS) wins over the default below.
worker_class = "uvicorn_worker.UvicornWorker"
workers = int(os.getenv("ORCH_WEB_WORKERS", "2"))
