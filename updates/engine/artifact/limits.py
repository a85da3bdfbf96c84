"""Caps applied while reading: everything in an artifact is attacker-controlled until verified."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_version_bytes: int = 4096
    max_manifest_bytes: int = 1 << 20
    max_signature_bytes: int = 8192
    max_header_bytes: int = 10 << 20  # applies to the compressed member and to its decompressed tar
    max_header_members: int = 256
    max_payload_files: int = 1024
    max_payload_bytes: int = 64 << 30  # total decompressed payload
    max_json_depth: int = 32
    # Member names, also when a PAX or GNU long-name header carries them.
    max_name_bytes: int = 4096
