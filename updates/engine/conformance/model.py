"""What a conformance run is given (`Subject`) and what it returns (`CheckResult`, `Report`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from updates.engine.conformance.rules import RULES

Status = Literal["pass", "fail", "warn", "skip"]
DEFAULT_TIMEOUT = 30.0
DEFAULT_SLOW = 2.0


@dataclass(frozen=True)
class Subject:
    """The interface under test and how the orchestrator would call it (current argv form:
    `<path> <State> <work dir> <type> [args...]`; the component id comes from Identity)."""

    path: Path
    component_type: str
    component_id: str | None = None
    args: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    slow: float = DEFAULT_SLOW
    kill_grace: float = 1.0
    # How long a state runs before the simulated power cut "at its start".
    kill_after: float = 0.05

    @property
    def interface(self) -> str:
        """The interface name: its file name, as under `interfaces/v1/<name>`."""
        return self.path.name


@dataclass(frozen=True)
class CheckResult:
    rule: str
    subject: str  # the query, state or flow the check looked at
    status: Status
    seen: str  # what was observed, one line
    seconds: float | None = None  # the time of the call(s) behind the check

    @property
    def doc(self) -> str:
        return RULES[self.rule].doc

    @property
    def text(self) -> str:
        return RULES[self.rule].text


@dataclass
class Report:
    subject: Subject
    destructive: bool
    results: list[CheckResult] = field(default_factory=list)

    def add(
        self, rule: str, subject: str, status: Status, seen: str, seconds: float | None = None
    ) -> CheckResult:
        assert rule in RULES, rule
        result = CheckResult(rule, subject, status, seen, seconds)
        self.results.append(result)
        return result

    def counts(self) -> dict[Status, int]:
        counted = Counter(r.status for r in self.results)
        return {s: counted.get(s, 0) for s in ("pass", "fail", "warn", "skip")}

    @property
    def failed(self) -> bool:
        return any(r.status == "fail" for r in self.results)

    def failed_rules(self) -> set[str]:
        return {r.rule for r in self.results if r.status == "fail"}

    def warned_rules(self) -> set[str]:
        return {r.rule for r in self.results if r.status == "warn"}
