"""The terminal progress line (updates/cli/progress.py): bytes done / total and the rate, redrawn
in place, cleared when the work is done; nothing at all off a terminal or under the update module."""

from __future__ import annotations

import io

import pytest

from updates.cli import progress
from updates.engine.transfer import CountingReader

MIB = 2**20


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_it_draws_bytes_total_and_rate_then_clears_when_done() -> None:
    out, now = Terminal(), [100.0]
    line = progress.Line(out, clock=lambda: now[0])
    line("backup", 1 * MIB, 10 * MIB)  # the first read starts the clock, draws nothing
    assert out.getvalue() == ""
    now[0] += 0.05
    line("backup", 2 * MIB, 10 * MIB)  # sooner than the redraw interval
    assert out.getvalue() == ""
    now[0] += 1.95
    line("backup", 5 * MIB, 10 * MIB)
    assert out.getvalue() == "\rbackup: 5.0 MiB / 10.0 MiB (50%), 2.5 MiB/s\x1b[K"
    line("backup", 10 * MIB, 10 * MIB)
    assert out.getvalue().endswith("\r\x1b[K")  # done: the line is gone before the report


def test_an_unknown_total_shows_bytes_and_rate() -> None:
    out, now = Terminal(), [0.0]
    line = progress.Line(out, clock=lambda: now[0])
    line("download /artifacts/x", 0, None)
    now[0] = 4.0
    line("download /artifacts/x", 8 * MIB, None)
    assert out.getvalue() == "\rdownload /artifacts/x: 8.0 MiB, 2.0 MiB/s\x1b[K"


def test_reads_are_reported_only_while_a_terminal_watches(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int, int | None]] = []

    class Recording(progress.Line):
        def __call__(self, label: str, done: int, total: int | None) -> None:
            seen.append((label, done, total))

    monkeypatch.setattr(progress, "Line", Recording)
    reader = CountingReader(io.BytesIO(b"x" * 10), "reading b.tar", 10)
    with progress.terminal_progress(io.StringIO()):  # piped: not a terminal
        reader.read(4)
    assert seen == []
    monkeypatch.setenv("MENDER_ORCHESTRATOR_CALLER", "update-module")
    with progress.terminal_progress(Terminal()):
        reader.read(3)
    assert seen == []
    monkeypatch.setenv("MENDER_ORCHESTRATOR_CALLER", "cli")
    with progress.terminal_progress(Terminal()):
        reader.read(3)
    assert seen == [("reading b.tar", 10, 10)]
