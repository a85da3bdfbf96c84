"""Log lines for journald or a terminal: the formats, and the deployment each line belongs to.

Standard library only: settings.py, the Celery worker and gunicorn's master (which never loads
Django) all build their logging from here.

- `text`: `<time> <LEVEL> <logger> [deployment N] message` (the bracket only inside a deployment);
- `json`: one object per line: `time` (ISO 8601, UTC), `level`, `logger`, `message`, `process`,
  and when set `deployment_id`, `component`, `state`, the fields of `EXTRA_FIELDS`, `exc`.

The deployment, component and state come from context variables that the deployment's runner
sets (`deployment_context`, `call_context`); `ContextFilter` sits on the handler, so every line
emitted meanwhile carries them, a third-party logger's too.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from updates.logcontext import current_call, deployment_id

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Structured values our own lines pass as `extra=` (kept out of the message for `jq`).
EXTRA_FIELDS = ("actor", "system", "targets", "exit_code", "duration_s", "answer", "outcome", "phase")


class ContextFilter(logging.Filter):
    """Puts the deployment id, component and state of the current context on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        # An explicit `extra={"deployment_id": n}` (a line about a deployment, outside its run) stays.
        record.deployment_id = getattr(record, "deployment_id", None) or deployment_id.get()
        call = current_call.get()
        record.component, record.state = call if call else (None, None)
        return True


def _utc(record: logging.LogRecord) -> str:
    return (
        datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        pk = getattr(record, "deployment_id", None)
        where = f" [deployment {pk}]" if pk is not None else ""
        line = f"{_utc(record)} {record.levelname} {record.name}{where} {record.getMessage()}"
        exc = self._exception(record)
        return f"{line}\n{exc}" if exc else line

    def _exception(self, record: logging.LogRecord) -> str:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        return "\n".join(t for t in (record.exc_text, record.stack_info) if t)


class JsonFormatter(TextFormatter):
    """One JSON object per line: a traceback stays inside its line (`exc`), so journald and
    `jq` see one record per event."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _utc(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for key in ("deployment_id", "component", "state", *EXTRA_FIELDS):
            value = getattr(record, key, None)
            if value is not None:
                data[key] = value
        exc = self._exception(record)
        if exc:
            data["exc"] = exc
        return json.dumps(data, default=str, ensure_ascii=False)


FORMATTERS: dict[str, type[logging.Formatter]] = {"text": TextFormatter, "json": JsonFormatter}


class OneLineForbidden(logging.Filter):
    """A 403 is a refusal working as meant: Django logs it with the PermissionDenied traceback,
    a dozen lines per refused click. Keep its one line ("Forbidden (Permission denied): /path")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 403:
            record.exc_info = None
            record.exc_text = None
        return True


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """The `LOGGING` dict: one stderr handler (journald under systemd; never stdout, which
    Mender parses for `show-provides`/`show-inventory`) with the context filter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}, "forbidden": {"()": OneLineForbidden}},
        "formatters": {"orchestrator": {"()": FORMATTERS[log_format]}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "orchestrator",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        # Django's default config gives `django` its own console handler (DEBUG only) and level
        # INFO; both would bypass ours (a second, unformatted line; INFO under LOG_LEVEL=WARNING).
        "loggers": {
            "django": {"handlers": [], "level": level, "propagate": True},
            "django.request": {"handlers": [], "filters": ["forbidden"], "propagate": True},
            # The signed journal anchors are a copy of the audit outside the database
            # (docs/audit.md): written whatever LOG_LEVEL is.
            "orchestrator.audit": {"level": "INFO"},
        },
    }
