"""Alternated measurements for a noisy machine: baseline and measured runs take turns (A B A B …)
and a figure is the median of the pairwise ratios, printed with its spread.

A busy moment of a shared machine slows whichever run it hits; a ratio taken within one pair
(two runs a second apart) cancels most of it, and the median over pairs drops the pairs it did
not. The spread (lowest and highest pairwise ratio) shows how much a figure can be trusted.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Pairs:
    baseline: list[float]
    measured: list[float]

    @property
    def ratios(self) -> list[float]:
        """measured / baseline of each pair: a cost ratio (lower is better)."""
        return [m / b for b, m in zip(self.baseline, self.measured, strict=True)]

    @property
    def speeds(self) -> list[float]:
        """baseline / measured of each pair: a speed ratio against the limit (higher is better)."""
        return [b / m for b, m in zip(self.baseline, self.measured, strict=True)]


def alternate(baseline: Callable[[], float], measured: Callable[[], float], pairs: int) -> Pairs:
    """Run `pairs` pairs, baseline first then measured; each callable returns seconds."""
    base: list[float] = []
    ours: list[float] = []
    for _ in range(pairs):
        base.append(baseline())
        ours.append(measured())
    return Pairs(base, ours)


def figure(ratios: list[float], *, goal: str) -> str:
    """`median 1.23 (spread 1.10..1.41 over 5 pairs, goal <= 1.5)`."""
    median = statistics.median(ratios)
    return f"median {median:.2f} (spread {min(ratios):.2f}..{max(ratios):.2f} over {len(ratios)} pairs, goal {goal})"


def seconds(values: list[float]) -> str:
    """Median seconds of one side, for context next to a ratio."""
    return f"{statistics.median(values):.3f} s"
