"""What a verified artifact says about itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PayloadFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ArtifactInfo:
    name: str
    group: str | None
    device_types: tuple[str, ...]
    depends_artifact_name: tuple[str, ...]
    depends_artifact_group: tuple[str, ...]
    payload_type: str | None
    provides: dict[str, str]
    depends: dict[str, list[str]]
    clears_provides: tuple[str, ...] | None
    meta_data: dict[str, object] | None
    scripts: tuple[str, ...]
    files: tuple[PayloadFile, ...]
    header_compression: str
    signed: bool
    signer_fingerprint: str | None
    header_info_raw: bytes
    type_info_raw: bytes
    meta_data_raw: bytes | None
    manifest_raw: bytes

    def all_provides(self) -> dict[str, str]:
        """Type-info provides plus the header-info ones, which the client always stores too."""
        merged = dict(self.provides)
        merged["artifact_name"] = self.name
        if self.group is not None:
            merged["artifact_group"] = self.group
        return merged
