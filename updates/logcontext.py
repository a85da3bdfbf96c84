"""The deployment, component and state a log line belongs to, as context variables.

The deployment's runner sets them (`deployment_context` here, `current_call` in the step journal);
`orchestrator_site.logs.ContextFilter` puts them on every line emitted meanwhile, in this thread
and in threads started with a copy of this context. Standard library only: gunicorn's master
imports this through the log configuration without loading Django.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

deployment_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("deployment_id", default=None)
current_call: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "current_call", default=None
)


@contextmanager
def deployment_context(pk: int) -> Iterator[None]:
    """Every line logged inside (in this thread, and in threads started with a copy of this
    context) carries the deployment's id."""
    token = deployment_id.set(pk)
    try:
        yield
    finally:
        deployment_id.reset(token)
