"""`policy.yaml` beside the topology (docs/policy.md): approval gates, a system health window and
the drift watch's interval. Optional: without the file nothing changes.

Problems are reported like the manifest's: file, line and dotted field, all of them at once, and
nothing is recorded while one remains.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from updates.engine.manifest import (
    DOC,
    SAFE_NAME,
    InputError,
    _absolute,
    _Checker,
    _describe,
    _in_reading_order,
    _Mark,
    read_optional,
)
from updates.engine.yamlpos import YNode

POLICY_FILE = "policy.yaml"
HEALTH_CHECKS_DIR = "health-checks"  # under DATA_DIR: where a check named without a '/' lives
GATE_STATES = ("Download", "ArtifactReboot", "ArtifactCommit")
OnTimeout = Literal["rollback", "proceed"]
ON_TIMEOUT: tuple[OnTimeout, ...] = ("rollback", "proceed")
DEFAULT_CHECK_TIMEOUT = 30.0

_TOP = ("api_version", "kind", "gates", "health", "drift")
_GATE_KEYS = ("before", "timeout", "on_timeout")
_HEALTH_KEYS = ("window", "interval", "checks")
_CHECK_KEYS = ("name", "command", "args", "timeout")
_DRIFT_KEYS = ("interval",)
_HINTS = {
    "after": "a gate is placed 'before' a state",
    "state": "did you mean 'before'?",
    "cmd": "did you mean 'command'?",
    "argv": "'command' names the executable, 'args' its arguments",
}
_DURATION = re.compile(r"([1-9][0-9]{0,6})(s|m|h)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Gate:
    before: str
    timeout: float  # seconds
    on_timeout: OnTimeout


@dataclass(frozen=True)
class HealthCheck:
    name: str
    command: Path  # resolved: a path as written, or <DATA_DIR>/health-checks/<name>
    args: tuple[str, ...]
    timeout: float

    def argv(self) -> list[str]:
        return [str(self.command), *self.args]


@dataclass(frozen=True)
class Health:
    window: float
    interval: float
    checks: tuple[HealthCheck, ...]


@dataclass(frozen=True)
class Policy:
    path: str
    gates: tuple[Gate, ...] = ()
    health: Health | None = None
    drift_interval: float | None = None

    def gate(self, before: str) -> Gate | None:
        return next((g for g in self.gates if g.before == before), None)

    def to_json(self) -> dict[str, Any]:
        """What a deployment keeps of the policy it started with (a resume keeps its gates)."""
        return {
            "path": self.path,
            "gates": [vars(g) for g in self.gates],
            "health": None
            if self.health is None
            else {
                "window": self.health.window,
                "interval": self.health.interval,
                "checks": [
                    {"name": c.name, "command": str(c.command), "args": list(c.args), "timeout": c.timeout}
                    for c in self.health.checks
                ],
            },
            "drift_interval": self.drift_interval,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Policy:
        health = data.get("health")
        return cls(
            path=data["path"],
            gates=tuple(Gate(g["before"], g["timeout"], g["on_timeout"]) for g in data.get("gates", [])),
            health=None
            if not health
            else Health(
                window=health["window"],
                interval=health["interval"],
                checks=tuple(
                    HealthCheck(c["name"], Path(c["command"]), tuple(c["args"]), c["timeout"])
                    for c in health["checks"]
                ),
            ),
            drift_interval=data.get("drift_interval"),
        )


def format_duration(seconds: float) -> str:
    """A duration as the policy writes it (`90s`, `30m`, `2h`)."""
    whole = int(seconds)
    for unit, size in (("h", 3600), ("m", 60)):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


# --------------------------------------------------------------------------------------------------
# Loading


def policy_file(topology_dir: Path | None, *, data_dir: Path) -> Policy | None:
    """`policy.yaml` in the topology directory, if there is one; InputError lists its problems."""
    path = topology_dir / POLICY_FILE if topology_dir is not None else None
    data = read_optional(path)
    if path is None or data is None:
        return None
    return parse_policy(data, path=path, data_dir=data_dir)


def parse_policy(data: bytes, *, path: Path, data_dir: Path) -> Policy:
    """Parse a policy document; raise InputError listing every problem."""
    ck = _Checker(str(_absolute(path)))
    root = ck.load(data)
    policy = None
    if root is not None and ck.mapping(root, DOC) is not None:
        policy = _body(ck, root, path, data_dir)
    if ck.problems or policy is None:
        raise InputError(_in_reading_order(ck.problems))
    return policy


def _body(ck: _Checker, root: YNode, path: Path, data_dir: Path) -> Policy | None:
    mark = _Mark(ck)
    ck.keys(root, "", _TOP, _HINTS)
    mapping = root.mapping or {}
    _optional_header(ck, mapping)
    gates = _gates(ck, mapping.get("gates"))
    health = _health(ck, mapping.get("health"), path.parent, data_dir)
    drift = _drift(ck, mapping.get("drift"))
    if not mark.clean:
        return None
    return Policy(str(_absolute(path)), gates or (), health, drift)


def _optional_header(ck: _Checker, mapping: dict[str, YNode]) -> None:
    # The header is optional; when written, it must be right (a manifest pasted here is a mistake).
    expected = {"api_version": "mender/v1", "kind": "policy"}
    for key, value in expected.items():
        node = mapping.get(key)
        if node is not None and node.value != value:
            ck.add(node.line, key, f"must be {value!r}, got {_describe(node)}")


def _duration(ck: _Checker, node: YNode | None, field_: str) -> float | None:
    if node is None:
        return None
    match = _DURATION.fullmatch(node.value) if isinstance(node.value, str) else None
    if match is None:
        ck.add(node.line, field_, f"must be a duration such as 90s, 30m or 2h, got {_describe(node)}")
        return None
    return float(int(match[1]) * _UNIT_SECONDS[match[2]])


def _gates(ck: _Checker, node: YNode | None) -> tuple[Gate, ...] | None:
    if node is None:
        return ()
    items = ck.sequence(node, "gates")
    if items is None:
        return None
    seen: dict[str, int] = {}
    gates = [_gate(ck, item, f"gates[{i}]", seen) for i, item in enumerate(items)]
    return tuple(g for g in gates if g is not None)


def _gate(ck: _Checker, item: YNode, where: str, seen: dict[str, int]) -> Gate | None:
    if ck.mapping(item, where) is None:
        return None
    mark = _Mark(ck)
    ck.keys(item, where, _GATE_KEYS, _HINTS)
    before_node = ck.require(item, "before", where)
    before = ck.string(before_node, f"{where}.before")
    if before is not None and before_node is not None:
        if before not in GATE_STATES:
            ck.add(
                before_node.line,
                f"{where}.before",
                f"must be one of {', '.join(GATE_STATES)}, got {before!r}",
            )
        elif before in seen:
            ck.add(
                before_node.line,
                f"{where}.before",
                f"a gate before {before} is already on line {seen[before]}",
            )
        else:
            seen[before] = before_node.line
    timeout = _duration(ck, ck.require(item, "timeout", where), f"{where}.timeout")
    on_timeout = _choice(ck, (item.mapping or {}).get("on_timeout"), f"{where}.on_timeout", ON_TIMEOUT)
    if not mark.clean or before is None or timeout is None:
        return None
    return Gate(before, timeout, cast(OnTimeout, on_timeout or "rollback"))


def _choice(ck: _Checker, node: YNode | None, field_: str, allowed: Sequence[str]) -> str | None:
    if node is None:
        return None
    if isinstance(node.value, str) and node.value in allowed:
        return node.value
    ck.add(node.line, field_, f"must be {' or '.join(allowed)}, got {_describe(node)}")
    return None


def _health(ck: _Checker, node: YNode | None, base: Path, data_dir: Path) -> Health | None:
    if node is None or ck.mapping(node, "health") is None:
        return None
    mark = _Mark(ck)
    ck.keys(node, "health", _HEALTH_KEYS, _HINTS)
    window = _duration(ck, ck.require(node, "window", "health"), "health.window")
    interval_node = ck.require(node, "interval", "health")
    interval = _duration(ck, interval_node, "health.interval")
    if window is not None and interval is not None and interval_node is not None and interval > window:
        ck.add(interval_node.line, "health.interval", "must not be longer than health.window")
    checks_node = ck.require(node, "checks", "health")
    items = ck.sequence(checks_node, "health.checks") or []
    names: dict[str, int] = {}
    checks = [_check(ck, item, f"health.checks[{i}]", names, base, data_dir) for i, item in enumerate(items)]
    if not mark.clean or window is None or interval is None:
        return None
    return Health(window, interval, tuple(c for c in checks if c is not None))


def _check(
    ck: _Checker, item: YNode, where: str, names: dict[str, int], base: Path, data_dir: Path
) -> HealthCheck | None:
    if ck.mapping(item, where) is None:
        return None
    mark = _Mark(ck)
    ck.keys(item, where, _CHECK_KEYS, _HINTS)
    name_node = ck.require(item, "name", where)
    name = ck.string(name_node, f"{where}.name")
    if name is not None and name_node is not None:
        if not SAFE_NAME.fullmatch(name):
            ck.add(
                name_node.line, f"{where}.name", f"must be a plain name ({SAFE_NAME.pattern}), got {name!r}"
            )
        elif name in names:
            ck.add(
                name_node.line, f"{where}.name", f"a check named {name!r} is already on line {names[name]}"
            )
        else:
            names[name] = name_node.line
    command_node = ck.require(item, "command", where)
    command = _command(ck, command_node, f"{where}.command", base, data_dir)
    args_node = (item.mapping or {}).get("args")
    args = () if args_node is None else ck.strings(args_node, f"{where}.args", non_empty=False)
    timeout_node = (item.mapping or {}).get("timeout")
    timeout = (
        DEFAULT_CHECK_TIMEOUT if timeout_node is None else _duration(ck, timeout_node, f"{where}.timeout")
    )
    if not mark.clean or name is None or command is None or args is None or timeout is None:
        return None
    return HealthCheck(name, command, args, timeout)


def _command(ck: _Checker, node: YNode | None, field_: str, base: Path, data_dir: Path) -> Path | None:
    """A path (relative to the policy file's folder) or a plain name under DATA_DIR/health-checks."""
    value = ck.string(node, field_)
    if value is None or node is None:
        return None
    if "/" in value:
        path = Path(value) if Path(value).is_absolute() else _absolute(base / value)
    elif SAFE_NAME.fullmatch(value):
        path = data_dir / HEALTH_CHECKS_DIR / value
    else:
        ck.add(node.line, field_, f"must be a path or a plain name ({SAFE_NAME.pattern}), got {value!r}")
        return None
    if not path.is_file():
        ck.add(
            node.line,
            field_,
            f"{path} does not exist (a plain name is looked up in {data_dir / HEALTH_CHECKS_DIR})",
        )
        return None
    return path


def _drift(ck: _Checker, node: YNode | None) -> float | None:
    if node is None or ck.mapping(node, "drift") is None:
        return None
    ck.keys(node, "drift", _DRIFT_KEYS, _HINTS)
    return _duration(ck, ck.require(node, "interval", "drift"), "drift.interval")
