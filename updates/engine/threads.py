"""Thread pools that keep the caller's context.

A pool thread does not inherit the submitting thread's `contextvars` (before Python 3.14), so a
log line from a component's thread would lose the deployment it belongs to. Each task runs in a
copy of the context as it was when it was submitted (a copy each: one context cannot be entered
by two threads at once).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_in_context(pool: Executor, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`list(pool.map(fn, items))`, each call in a copy of the caller's context."""
    futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in items]
    try:
        return [f.result() for f in futures]
    finally:
        for future in futures:  # as pool.map: after an exception, what has not started never does
            future.cancel()
