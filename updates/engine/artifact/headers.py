"""Parsing of the small members: version, manifest, header-info, type-info, meta-data.

Reading is strict about structure and types but tolerates unknown keys in header-info/type-info
(as the device client does); the writer never emits them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from updates.engine.text import safe_json

from .errors import HeaderError, LimitError, ManifestError, PayloadMismatchError, VersionError
from .limits import Limits
from .names import (
    HEADER_RE,
    MAX_ARTIFACT_NAME,
    MAX_MANIFEST_NAME,
    PAYLOAD_TYPE_RE,
    check_payload_name,
    check_unsafe,
)

MANIFEST_LINE_RE = re.compile(rb"([0-9a-f]{64})  (\S+)")
HEADER_INFO = "header-info"
TYPE_INFO = "headers/0000/type-info"
META_DATA = "headers/0000/meta-data"
DATA_PREFIX = "data/0000/"


def _depth(value: object) -> int:
    # Iterative so a hostile document cannot blow the Python stack here.
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children)
    return deepest


def load_json(raw: bytes, member: str, limits: Limits, error: type[HeaderError] | type[VersionError]) -> Any:
    try:
        value = json.loads(raw)
    except RecursionError:
        raise LimitError("JSON nested too deeply", member)
    except ValueError as exc:
        raise error(f"invalid JSON: {exc}", member)
    if _depth(value) > limits.max_json_depth:
        raise LimitError(f"JSON nested deeper than {limits.max_json_depth}", member)
    return safe_json(value)  # a `\ud800` escape must not reach a page or a row


def parse_version(raw: bytes, limits: Limits) -> None:
    doc = load_json(raw, "version", limits, VersionError)
    if not isinstance(doc, dict) or set(doc) != {"format", "version"}:
        raise VersionError('expected exactly {"format", "version"}', "version")
    if doc["format"] != "mender":
        raise VersionError(f"unsupported format {doc['format']!r}", "version")
    if type(doc["version"]) is not int or doc["version"] != 3:
        raise VersionError(f"unsupported version: {doc['version']!r} (only 3)", "version")


@dataclass
class Manifest:
    raw: bytes
    entries: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)  # payload file name -> sha256, manifest order

    def sha_of(self, name: str, error_member: str) -> str:
        if name not in self.entries:
            raise ManifestError(f"no entry for {name}", error_member)
        return self.entries[name]


def _manifest_name(name: str) -> str | None:
    """Return the payload file name for data entries, None for the others; raise on anything else."""
    if name.startswith(DATA_PREFIX):
        check_payload_name(name[len(DATA_PREFIX) :], "manifest")
        return name[len(DATA_PREFIX) :]
    check_unsafe(name, "manifest")
    if name != "version" and not HEADER_RE.fullmatch(name):
        raise ManifestError(f"unexpected entry {name!r}", "manifest")
    return None


def _manifest_line(line: bytes, number: int) -> tuple[str, str]:
    match = MANIFEST_LINE_RE.fullmatch(line)
    if not match:
        raise ManifestError(f"line {number}: malformed (want '<sha256>  <name>')", "manifest")
    name = match.group(2).decode("ascii", "replace")
    if len(name) > MAX_MANIFEST_NAME or not match.group(2).isascii():
        raise ManifestError(f"line {number}: name too long or not ASCII", "manifest")
    return match.group(1).decode(), name


def parse_manifest(raw: bytes, limits: Limits) -> Manifest:
    if not raw.endswith(b"\n"):
        raise ManifestError("empty or not terminated by a newline", "manifest")
    lines = raw[:-1].split(b"\n")
    if len(lines) > limits.max_payload_files + 2:
        raise LimitError(f"{len(lines)} lines exceed the cap of {limits.max_payload_files + 2}", "manifest")
    manifest = Manifest(raw)
    for number, line in enumerate(lines, 1):
        sha, name = _manifest_line(line, number)
        if name in manifest.entries:
            raise ManifestError(f"duplicate entry {name!r}", "manifest")
        manifest.entries[name] = sha
        payload = _manifest_name(name)
        if payload is not None:
            manifest.data[payload] = sha
    return manifest


def _str_list(value: object, what: str, member: str, *, non_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or (non_empty and not value):
        raise HeaderError(f"{what} must be a {'non-empty ' if non_empty else ''}list of strings", member)
    return tuple(value)


def _object(value: object, what: str, member: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HeaderError(f"{what} must be a JSON object", member)
    return value


def _payload_type(doc: dict[str, Any]) -> str | None:
    payloads = doc.get("payloads")
    if not isinstance(payloads, list) or len(payloads) != 1 or not isinstance(payloads[0], dict):
        raise HeaderError("payloads must be a list of exactly one object", HEADER_INFO)
    kind = payloads[0].get("type")
    if kind is not None and (not isinstance(kind, str) or not PAYLOAD_TYPE_RE.fullmatch(kind)):
        raise HeaderError(f"invalid payload type {kind!r}", HEADER_INFO)
    return kind


def check_artifact_name(name: object, member: str) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_ARTIFACT_NAME or not name.isprintable():
        raise HeaderError("artifact_name must be a printable string of 1-256 characters", member)
    return name


@dataclass(frozen=True)
class HeaderInfo:
    name: str
    group: str | None
    device_types: tuple[str, ...]
    depends_name: tuple[str, ...]
    depends_group: tuple[str, ...]
    payload_type: str | None


def parse_header_info(raw: bytes, limits: Limits) -> HeaderInfo:
    doc = _object(load_json(raw, HEADER_INFO, limits, HeaderError), HEADER_INFO, HEADER_INFO)
    provides = _object(doc.get("artifact_provides"), "artifact_provides", HEADER_INFO)
    depends = _object(doc.get("artifact_depends"), "artifact_depends", HEADER_INFO)
    group = provides.get("artifact_group")
    if group is not None and not isinstance(group, str):
        raise HeaderError("artifact_group must be a string", HEADER_INFO)
    return HeaderInfo(
        name=check_artifact_name(provides.get("artifact_name"), HEADER_INFO),
        group=group,
        device_types=_str_list(depends.get("device_type"), "device_type", HEADER_INFO, non_empty=True),
        depends_name=_str_list(depends.get("artifact_name", []), "depends artifact_name", HEADER_INFO),
        depends_group=_str_list(depends.get("artifact_group", []), "depends artifact_group", HEADER_INFO),
        payload_type=_payload_type(doc),
    )


@dataclass(frozen=True)
class TypeInfo:
    provides: dict[str, str]
    depends: dict[str, list[str]]
    clears: tuple[str, ...] | None


def _check_type(kind: object, payload_type: str | None) -> None:
    # mender-artifact <= 4.3 writes "" for rootfs-image; tolerated for that type only.
    if kind != payload_type and not (kind == "" and payload_type == "rootfs-image"):
        raise HeaderError(f"type {kind!r} differs from header-info payload type {payload_type!r}", TYPE_INFO)


def _depends(value: object) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for key, item in _object(value, "artifact_depends", TYPE_INFO).items():
        result[key] = [item] if isinstance(item, str) else list(_str_list(item, f"depends {key}", TYPE_INFO))
    return result


def _provides(value: object) -> dict[str, str]:
    provides = _object(value, "artifact_provides", TYPE_INFO)
    if not all(isinstance(v, str) for v in provides.values()):
        raise HeaderError("artifact_provides values must be strings", TYPE_INFO)
    return dict(provides)


def parse_type_info(raw: bytes, payload_type: str | None, limits: Limits) -> TypeInfo:
    doc = _object(load_json(raw, TYPE_INFO, limits, HeaderError), TYPE_INFO, TYPE_INFO)
    if "type" not in doc:
        raise HeaderError("missing type", TYPE_INFO)
    _check_type(doc["type"], payload_type)
    clears = doc.get("clears_artifact_provides")
    return TypeInfo(
        provides=_provides(doc.get("artifact_provides", {})),
        depends=_depends(doc.get("artifact_depends", {})),
        clears=None if clears is None else _str_list(clears, "clears_artifact_provides", TYPE_INFO),
    )


def parse_meta_data(raw: bytes | None, limits: Limits) -> dict[str, object] | None:
    # An empty file is "no meta-data" (mender-artifact writes one for rootfs-image).
    if raw is None or not raw.strip():
        return None
    return _object(load_json(raw, META_DATA, limits, HeaderError), "meta-data", META_DATA)


def check_payload_files(manifest: Manifest, payload_type: str | None) -> None:
    if payload_type is None and manifest.data:
        raise PayloadMismatchError("empty-payload artifact lists payload files", "manifest")
