"""Provides / depends logic: parsing interface query answers and deciding what an artifact changes.

Pure functions only; the rules are Mender's artifact selection, docs/protocol.md §3.1 and §7.11.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

from updates.engine.interface import ProtocolError

DEVICE_TYPE = "device_type"
ARTIFACT_NAME = "artifact_name"
MENDER_VERSION_KEY = "rootfs-image.version"


class ProvidesError(ProtocolError):
    """An interface answered a query with output we cannot trust; the message names source and line."""


def _lines(stdout: str) -> Iterator[tuple[int, str]]:
    # Answers are compared trimmed; blank lines (e.g. a trailing newline pair) carry no meaning.
    for number, line in enumerate(stdout.splitlines(), start=1):
        if line.strip():
            yield number, line.strip()


def _split(line: str, number: int, source: str) -> tuple[str, str]:
    key, sep, value = line.partition("=")
    if not sep:
        raise ProvidesError(f"{source}: line {number}: expected key=value, got {line!r}")
    if not key or key != key.strip() or any(c.isspace() for c in key):
        raise ProvidesError(f"{source}: line {number}: invalid key {key!r} (keys have no spaces)")
    return key, value


def parse_provides(
    stdout: str, *, source: str, interface: str | None = None, allow_device_type: bool = False
) -> dict[str, str]:
    """Parse a ``Provides`` answer: ``key=value`` lines, no repeated keys, no ``device_type``.

    With ``interface`` given, also require exactly one of ``rootfs-image.version`` and
    ``rootfs-image.<interface>.version`` (otherwise Mender cannot tell which version runs).
    ``allow_device_type`` is for seed-form interfaces, whose old mocks still print it.
    """
    result: dict[str, str] = {}
    for number, line in _lines(stdout):
        key, value = _split(line, number, source)
        if key in result:
            raise ProvidesError(f"{source}: line {number}: duplicate key {key!r}")
        if key == DEVICE_TYPE and not allow_device_type:
            raise ProvidesError(f"{source}: line {number}: interfaces must not provide {DEVICE_TYPE!r}")
        result[key] = value
    if interface is not None:
        _check_version_key(result, interface, source)
    return result


def _check_version_key(provides: Mapping[str, str], interface: str, source: str) -> None:
    keys = [k for k in (MENDER_VERSION_KEY, interface_version_key(interface)) if k in provides]
    if len(keys) != 1:
        found = " and ".join(keys) if keys else "neither"
        raise ProvidesError(
            f"{source}: exactly one of {MENDER_VERSION_KEY!r} and {interface_version_key(interface)!r} "
            f"must be provided, found {found}"
        )


def interface_version_key(interface: str) -> str:
    """The version key a non-Mender component reports: ``rootfs-image.<interface>.version``."""
    return f"rootfs-image.{interface}.version"


def parse_inventory(stdout: str, *, source: str = "Inventory") -> dict[str, list[str]]:
    """Parse an ``Inventory`` answer; a key given several times collects all its values in order."""
    result: dict[str, list[str]] = {}
    for number, line in _lines(stdout):
        key, value = _split(line, number, source)
        result.setdefault(key, []).append(value)
    return result


def parse_identity(stdout: str, *, source: str) -> str:
    """Parse an ``Identity`` answer: exactly one non-empty line ``id=<value>``."""
    lines = list(_lines(stdout))
    if len(lines) != 1:
        raise ProvidesError(f"{source}: expected exactly one line 'id=<value>', got {len(lines)} lines")
    number, line = lines[0]
    key, value = _split(line, number, source)
    if key != "id" or not value.strip():
        raise ProvidesError(f"{source}: line {number}: expected 'id=<value>', got {line!r}")
    return value.strip()


def clear_matches(pattern: str, key: str) -> bool:
    """Whether a ``clears_artifact_provides`` pattern covers ``key``; ``*`` matches any run of characters."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, key, flags=re.DOTALL) is not None


def apply_provides(
    current: Mapping[str, str], *, provides: Mapping[str, str], clears: Sequence[str] | None
) -> dict[str, str]:
    """The provides a component would have after installing an artifact (``clears=None`` clears all)."""
    if clears is None:
        kept: dict[str, str] = {}
    else:
        kept = {k: v for k, v in current.items() if not any(clear_matches(p, k) for p in clears)}
    kept.update(provides)
    return kept


def is_installed(
    current: Mapping[str, str], *, provides: Mapping[str, str], clears: Sequence[str] | None
) -> bool:
    """True when installing the candidate would change nothing, i.e. it is already installed.

    ``artifact_name`` is left out of the comparison unless it is the only key on either side:
    the same software can ship under several artifact names, so the versioned keys decide; only
    when nothing else is known does the name have to carry the comparison.
    """
    after = apply_provides(current, provides=provides, clears=clears)
    if _only_name(current) or _only_name(after):
        return dict(current) == after
    return _without_name(current) == _without_name(after)


def _only_name(provides: Mapping[str, str]) -> bool:
    return set(provides) == {ARTIFACT_NAME}


def _without_name(provides: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in provides.items() if k != ARTIFACT_NAME}


def unmet_depends(
    current: Mapping[str, str], depends: Mapping[str, Sequence[str]], *, component_type: str | None = None
) -> list[str]:
    """Human-readable reasons why ``artifact_depends`` are not met by ``current``; [] when satisfied.

    ``device_type`` is never compared with the provides (interfaces must not report one); it is
    checked against ``component_type`` when given, and otherwise left to :func:`device_type_ok`.
    """
    reasons = (_unmet(key, wanted, current, component_type) for key, wanted in depends.items())
    return [r for r in reasons if r is not None]


def _unmet(
    key: str, wanted: Sequence[str], current: Mapping[str, str], component_type: str | None
) -> str | None:
    values = [wanted] if isinstance(wanted, str) else list(wanted)
    if key == DEVICE_TYPE:
        if component_type is None or device_type_ok(component_type, values):
            return None
        return f"{DEVICE_TYPE}: artifact needs one of {values}, component type is {component_type!r}"
    if key not in current:
        return f"{key}: artifact needs one of {values}, the component does not provide it"
    if current[key] not in values:
        return f"{key}: artifact needs one of {values}, the component has {current[key]!r}"
    return None


def device_type_ok(component_type: str, device_types: Sequence[str]) -> bool:
    """An artifact fits a component when its compatible device types include the component type."""
    if isinstance(device_types, str):  # a lone string is a Sequence[str] too; never match substrings
        return component_type == device_types
    return component_type in device_types
