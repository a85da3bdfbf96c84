"""Where `artifact_name` is resolved when a manifest's `artifact_path` does not exist.

The planner asks these in order (docs/protocol.md §3.1): the artifact store first, then the configured
artifact server. The store hands out store paths, i.e. complete, verified, read-only files that
cannot change under a running deployment. The server's artifacts are, for a deployment, stream
references (docs/bytes.md): only their verified header is read at planning, the bytes stream into
Download; for a bundle they are downloaded into the store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from django.utils import timezone

from updates.engine.artifact import ArtifactError, ArtifactInfo, Limits, PublicKey
from updates.engine.planner import ArtifactSource, SourceError
from updates.engine.server import ArtifactServer, RemoteArtifact, ServerError, ServerSettings
from updates.engine.store import ArtifactStore, StoreError
from updates.engine.streaming import is_stream_ref, ref_path, write_ref
from updates.models import BundleArtifact, StoredArtifact
from updates.services.environment import Environment

log = logging.getLogger("orchestrator")


def artifact_store(env: Environment) -> ArtifactStore:
    return ArtifactStore(env.config.artifacts_cache_path or env.datastore / "artifacts")


def artifact_sources(env: Environment, *, streamed: bool = False) -> list[ArtifactSource]:
    """`streamed`: for a deployment (or its preview), server artifacts are planned as streams
    (docs/bytes.md) instead of downloaded into the store first."""
    store = artifact_store(env)
    sources: list[ArtifactSource] = [StoreSource(store)]
    server = artifact_server(env)
    if server is not None:
        streams = (
            StreamPlanning(
                env.datastore / "streams",
                env.config.artifacts_cache_max_size_bytes,
                env.config.artifacts_cache_enabled,
            )
            if streamed
            else None
        )
        sources.append(ServerSource(server, store, keys=env.keys(), streams=streams))
    return sources


def artifact_server(env: Environment) -> ArtifactServer | None:
    conf = env.config.artifact_server
    if conf is None:
        return None
    settings = ServerSettings(
        url=conf.url,
        token=conf.token or "",  # TokenFile was read (or reported unreadable) with the config
        timeout=float(conf.timeout_seconds),
        retries=conf.retries,
        cafile=env.config.server_certificate,
    )
    return ArtifactServer(settings)


def stored_artifact_record(
    info: ArtifactInfo,
    *,
    sha256: str,
    size: int,
    origin: str,
    server_id: str = "",
    base_sha256: str = "",
    full_sha256: str = "",
) -> StoredArtifact:
    """The store's row for verified bytes (one per sha256, whoever brought them first); for a
    delta, the base it needs and the artifact it rebuilds."""
    row, _ = StoredArtifact.objects.get_or_create(
        sha256=sha256,
        defaults={
            "size": size,
            "name": info.name,
            "device_types": list(info.device_types),
            "payload_type": info.payload_type or "",
            "provides": info.all_provides(),
            "depends": dict(info.depends),
            "signed": info.signed,
            "signer_fingerprint": info.signer_fingerprint or "",
            "origin": origin,
            "server_id": server_id,
            "base_sha256": base_sha256,
            "full_sha256": full_sha256,
            "last_used_at": timezone.now(),
        },
    )
    return row


class StoreSource:
    """Artifacts already in the store (from bundles or earlier downloads), by name and type."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    def candidates(self, *, artifact_name: str, component_type: str) -> list[Path]:
        rows = [
            r for r in StoredArtifact.objects.filter(name=artifact_name) if component_type in r.device_types
        ]
        paths = {r.pk: path for r in rows if self.store.has(r.sha256) and (path := self._path(r))}
        StoredArtifact.objects.filter(pk__in=list(paths)).update(last_used_at=timezone.now())
        return list(paths.values())

    def _path(self, row: StoredArtifact) -> Path | None:
        """The store file; for a delta, a bundle's stream reference to it (never the delta itself:
        docs/bytes.md), or None when no bundle holds one any more."""
        if not row.base_sha256:
            return self.store.path(row.sha256)
        for link in BundleArtifact.objects.filter(artifact=row).select_related("bundle"):
            path = Path(link.bundle.directory) / link.member
            if link.bundle.directory and is_stream_ref(path):
                return path
        return None


@dataclass(frozen=True)
class StreamPlanning:
    """Where stream references go, and the cache budget a streamed artifact must fit."""

    directory: Path
    cache_max_bytes: int
    cache_enabled: bool


class ServerSource:
    """The release's artifacts on the artifact server: downloaded (verified) into the store, or,
    with `streams`, planned as streams (their header read and verified, the rest left there).

    Raises SourceError when it has no candidate because the server failed (or does not list
    the release), so the planner and bundle checks name that cause rather than "not found".
    """

    def __init__(
        self,
        server: ArtifactServer,
        store: ArtifactStore,
        *,
        keys: list[PublicKey],
        streams: StreamPlanning | None = None,
    ) -> None:
        self.server = server
        self.store = store
        self.keys = keys
        self.streams = streams
        self.refs: dict[str, Path] = {}  # server id -> stream reference, read once per plan

    def candidates(self, *, artifact_name: str, component_type: str) -> list[Path]:
        try:
            remote = self.server.list_artifacts(release_name=artifact_name, device_type=component_type)
        except ServerError as exc:
            raise self._failure(exc) from exc
        if not remote:
            raise SourceError(
                f"artifact server {self.server.base}: has no artifact {artifact_name!r} "
                f"for device type {component_type!r}"
            )
        paths, failures = [], []
        for artifact in remote:
            try:
                paths.append(self._local(artifact))
            except (ServerError, ArtifactError, StoreError) as exc:
                failures.append(self._failure(exc))  # refused: no candidate; the others still are
        if not paths:
            raise failures[0] if len(failures) == 1 else SourceError("; ".join(map(str, failures)))
        return paths

    def _failure(self, exc: Exception) -> SourceError:
        base = self.server.base
        detail = str(exc)
        if isinstance(exc, ServerError) and exc.where and exc.where.startswith(base):
            # "HTTP 500 … (/api/…)": the server is named once, in front.
            detail = f"{exc.reason} ({exc.where.removeprefix(base)})"
        # Logged too: a partial failure (another download worked) is reported nowhere else.
        log.error("artifact server %s: %s", base, detail)
        return SourceError(f"artifact server {base}: {detail}")

    def _local(self, artifact: RemoteArtifact) -> Path:
        # Downloaded before (same server id, still stored): no second download.
        row = StoredArtifact.objects.filter(server_id=artifact.id, name=artifact.name).first()
        if row is not None and self.store.has(row.sha256):
            if self.streams is not None:
                row.last_used_at = timezone.now()  # a cache hit: used by this deployment
                row.save(update_fields=["last_used_at"])
            return self.store.path(row.sha256)
        if self.streams is not None:
            return self._stream_ref(artifact, self.streams)
        stored, info = self.server.fetch(artifact, self.store, keys=self.keys, limits=Limits())
        stored_artifact_record(
            info, sha256=stored.sha256, size=stored.size, origin="server", server_id=artifact.id
        )
        return stored.path

    def _stream_ref(self, artifact: RemoteArtifact, streams: StreamPlanning) -> Path:
        budget = streams.cache_max_bytes
        if streams.cache_enabled and budget and (artifact.size or 0) > budget:
            raise StoreError(
                f"{artifact.size} bytes do not fit ArtifactsCache.MaxSizeBytes ({budget})",
                f"artifact {artifact.name!r} (server id {artifact.id})",
            )
        if artifact.id not in self.refs:
            ref, _ = self.server.read_head(artifact, keys=self.keys)
            self.refs[artifact.id] = path = ref_path(streams.directory, self.server.base, artifact.id)
            write_ref(path, ref)
        return self.refs[artifact.id]
