"""Error families of the artifact reader/writer.

Every error carries the outer (and, for nested tars, inner) member it is about, so a one-line
message is enough to locate the problem: ``data/0000.tar.gz: hello.txt: checksum mismatch``.
"""

from __future__ import annotations

from updates.engine.errors import InvalidInput


class ArtifactError(InvalidInput):
    """Base class: the artifact (or the input given to the writer) is not acceptable."""

    def __init__(self, reason: str, member: str | None = None) -> None:
        self.reason = reason
        self.member = member
        super().__init__(f"{member}: {reason}" if member else reason)


class FormatError(ArtifactError):
    """Member order, outer/inner structure, unknown members, unsupported compression."""


class VersionError(ArtifactError):
    """The `version` member is not format "mender", version 3."""


class ManifestError(ArtifactError):
    """The manifest is malformed or lacks a required entry."""


class ChecksumError(ArtifactError):
    """A member or payload file does not hash to its manifest entry."""


class SignatureError(ArtifactError):
    """Missing, malformed or non-verifying signature; unusable key."""


class UnsafeMemberError(ArtifactError):
    """Links, devices, directories, traversal, duplicate or badly formed names."""


class LimitError(ArtifactError):
    """A configured cap was exceeded (sizes, counts, decompression bombs, JSON depth)."""


class TruncatedError(ArtifactError):
    """The stream ended in the middle of a member."""


class HeaderError(ArtifactError):
    """Invalid header-info, type-info or meta-data JSON (also invalid writer input for them)."""


class PayloadMismatchError(ArtifactError):
    """A manifest data entry has no payload file, or a payload file has no manifest entry."""
