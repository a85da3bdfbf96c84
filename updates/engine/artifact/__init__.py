"""Pure-Python Mender Artifact (format v3) reader, verifier and writer.

The format: docs/protocol.md §7; the cases the tests build: §8. Only stdlib, `cryptography` and `zstandard`.
"""

from __future__ import annotations

from .errors import (
    ArtifactError,
    ChecksumError,
    FormatError,
    HeaderError,
    LimitError,
    ManifestError,
    PayloadMismatchError,
    SignatureError,
    TruncatedError,
    UnsafeMemberError,
    VersionError,
)
from .limits import Limits
from .model import ArtifactInfo, PayloadFile
from .reader import ArtifactReader, PayloadStream, read_artifact
from .signing import PrivateKey, PublicKey, key_fingerprint, load_private_key, load_public_key
from .writer import write_artifact

__all__ = [
    "ArtifactError",
    "ArtifactInfo",
    "ArtifactReader",
    "ChecksumError",
    "FormatError",
    "HeaderError",
    "LimitError",
    "Limits",
    "ManifestError",
    "PayloadFile",
    "PayloadMismatchError",
    "PayloadStream",
    "PrivateKey",
    "PublicKey",
    "SignatureError",
    "TruncatedError",
    "UnsafeMemberError",
    "VersionError",
    "key_fingerprint",
    "load_private_key",
    "load_public_key",
    "read_artifact",
    "write_artifact",
]
