"""Delta bundles (docs/bytes.md): the bases a delta bundle needs, checked before intake reads it;
the artifact it rebuilds, named in plans by a stream reference; the bases retention keeps."""

from __future__ import annotations

from pathlib import Path

from updates.engine.delta import DeltaError, missing_bases, read_index
from updates.engine.store import SHA_RE
from updates.engine.streaming import StreamRef, write_ref
from updates.models import StoredArtifact
from updates.services.environment import environment_load
from updates.services.sources import artifact_store


def delta_bases_check(path: Path) -> None:
    """Refuse a delta bundle whose bases the store lacks, naming every missing one (DeltaError);
    any other file passes. The deltas themselves are checked as intake reads them."""
    entries = read_index(path)
    if entries is None:
        return
    store = artifact_store(environment_load())

    def base_path(sha256: str) -> Path | None:
        return store.path(sha256) if SHA_RE.fullmatch(sha256) and store.has(sha256) else None

    missing = missing_bases(entries, base_path)
    if missing:
        raise DeltaError("missing base artifact(s): " + "; ".join(missing))


def delta_ref_write(member_path: Path, ref: StreamRef) -> None:
    """A bundle's artifact that came as a delta: at its member path, the stream reference which
    Download rebuilds the artifact from (read-only, like the links to store files)."""
    write_ref(member_path, ref)
    member_path.chmod(0o444)


def delta_bases() -> set[str]:
    """The sha256 of every base a stored delta needs: retention and the cache never evict them."""
    return set(StoredArtifact.objects.exclude(base_sha256="").values_list("base_sha256", flat=True))
