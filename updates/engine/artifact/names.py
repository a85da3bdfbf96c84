"""Member names and the checks that keep them from becoming paths we did not intend."""

from __future__ import annotations

import re

from .errors import UnsafeMemberError

COMPRESSIONS = {"": "none", ".gz": "gzip", ".xz": "xz", ".zst": "zstd"}
# The writer's compressions (mender-artifact's --compression names) and their member suffixes.
SUFFIXES = {
    "none": "",
    "gzip": ".gz",
    "lzma": ".xz",
    "zstd_fastest": ".zst",
    "zstd_default": ".zst",
    "zstd_better": ".zst",
    "zstd_best": ".zst",
}
HEADER_RE = re.compile(r"header\.tar(\.gz|\.xz|\.zst)?")
DATA_RE = re.compile(r"data/(\d{4})\.tar(\.gz|\.xz|\.zst)?")
PAYLOAD_NAME_RE = re.compile(r"[\w\-.,]+", re.ASCII)
SCRIPT_RE = re.compile(
    r"Artifact(Install|Reboot|Rollback|RollbackReboot|Commit|Failure)_(Enter|Leave|Error)_[0-9]{2}(_[^\s/\\]+)?"
)
# The payload type names the update-module executable on the device.
PAYLOAD_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
AUGMENT_NAMES = ("manifest-augment", "header-augment")
MAX_MANIFEST_NAME = 100
MAX_ARTIFACT_NAME = 256


def check_unsafe(name: str, member: str | None = None) -> None:
    """Reject names that could escape a directory, before any other name check."""
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or "\0" in name or ".." in parts or "." in parts:
        raise UnsafeMemberError(f"unsafe member name {name!r}", member)
    if "" in parts:
        raise UnsafeMemberError(f"unsafe member name {name!r} (empty path component)", member)


def check_payload_name(name: str, member: str | None = None) -> None:
    check_unsafe(name, member)
    if not PAYLOAD_NAME_RE.fullmatch(name) or name in (".", ".."):
        raise UnsafeMemberError(f"invalid payload file name {name!r}", member)


def check_script_name(name: str, member: str | None = None) -> None:
    check_unsafe(name, member)
    if not SCRIPT_RE.fullmatch(name) or ".." in name:
        raise UnsafeMemberError(f"invalid state script name {name!r}", member)


def compression_of(suffix: str | None) -> str:
    return COMPRESSIONS[suffix or ""]
