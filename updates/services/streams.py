"""Where a deployment's streamed server artifacts are read at Download (docs/bytes.md).

`ArtifactsCache.Enabled: false` (the default): straight from the server, nothing stored. Enabled:
the first component to stream an artifact also writes it into the artifact store (the cache, in
`ArtifactsCache.Path`), kept once the whole artifact verified; components sharing the artifact
wait for that and read the cached copy. An artifact that does not fit `MaxSizeBytes`, after the
cached artifacts this deployment does not use are evicted, fails that Download. At the end of
the deployment cached artifacts it did not use are deleted (`cache_clean_after_deployment`).
"""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import threading
from pathlib import Path
from typing import IO

from django.db.models import QuerySet
from django.utils import timezone

from updates.engine.artifact import ArtifactError, ArtifactReader, PublicKey
from updates.engine.delta import DeltaEntry, DeltaError, RebuiltStream
from updates.engine.server import ArtifactServer
from updates.engine.store import SHA_RE, ArtifactStore, StoreError, StoreWriter
from updates.engine.streaming import STREAM_SUFFIX, ArtifactStream, StreamMismatch, StreamOpener, StreamRef
from updates.models import BundleArtifact, Deployment, StoredArtifact
from updates.services.deltas import delta_bases
from updates.services.environment import Environment
from updates.services.sources import artifact_server, artifact_store, stored_artifact_record

log = logging.getLogger("orchestrator")


def stream_opener(env: Environment, *, since: datetime.datetime | None) -> StreamOpener:
    """The deployment's opener; `since`: when it started (what it used since is kept)."""
    store = artifact_store(env)
    server = artifact_server(env)
    if server is None:
        return _Rebuilding(store, None)
    if not env.config.artifacts_cache_enabled:
        return _Rebuilding(store, _Direct(server))
    caching = CachingStreams(
        server,
        store,
        keys=env.keys(),
        max_bytes=env.config.artifacts_cache_max_size_bytes,
        since=since or timezone.now(),
    )
    return _Rebuilding(store, caching)


class _Rebuilding:
    """A stored delta's artifact, rebuilt against its stored base as it is read (docs/bytes.md);
    any other reference goes to the server."""

    def __init__(self, store: ArtifactStore, server: StreamOpener | None) -> None:
        self.store = store
        self.server = server

    def open(self, ref: StreamRef) -> ArtifactStream:
        if not ref.base_sha256:
            if self.server is None:
                raise ArtifactError("no artifact server to stream from", ref.label())
            return self.server.open(ref)
        for sha256, what in ((ref.id, "delta"), (ref.base_sha256, "base")):
            if not (SHA_RE.fullmatch(sha256) and self.store.has(sha256)):
                raise StoreError(
                    f"its {what} (sha256 {sha256}) is no longer in the artifact store", ref.label()
                )
        entry = DeltaEntry(
            member=ref.name,
            name=ref.name,
            sha256=ref.sha256,
            size=ref.size or 0,
            base_sha256=ref.base_sha256,
            base_name="",
            delta=ref.id,
        )
        return _Checked(RebuiltStream(self.store.path(ref.base_sha256), self.store.path(ref.id), entry), ref)


class _Checked:
    """A rebuild that gives other bytes than planned fails Download like any stream mismatch."""

    def __init__(self, stream: RebuiltStream, ref: StreamRef) -> None:
        self.stream, self.ref, self.size = stream, ref, stream.size

    def read(self, n: int = -1) -> bytes:
        try:
            return self.stream.read(n)
        except DeltaError as exc:
            reason = str(exc).removeprefix(f"{self.ref.name}: ")  # the label names it
            raise StreamMismatch(reason, self.ref.label()) from None

    def verified(self) -> None:
        self.stream.verified()

    def close(self) -> None:
        self.stream.close()


class _Direct:
    def __init__(self, server: ArtifactServer) -> None:
        self.server = server

    def open(self, ref: StreamRef) -> ArtifactStream:
        return self.server.stream(ref.id, ref.size)


class CachingStreams:
    """The artifacts cache: one copy per artifact, filled by the first component that streams it."""

    def __init__(
        self,
        server: ArtifactServer,
        store: ArtifactStore,
        *,
        keys: list[PublicKey],
        max_bytes: int,
        since: datetime.datetime,
    ) -> None:
        self.server = server
        self.store = store
        self.keys = keys
        self.max_bytes = max_bytes
        self.since = since
        self.guard = threading.Lock()
        self.locks: dict[str, threading.Lock] = {}

    def open(self, ref: StreamRef) -> ArtifactStream:
        lock = self._lock(ref.id)
        lock.acquire()  # a component sharing the artifact waits here while the first one fills it
        try:
            hit = self._cached(ref)
            if hit is not None:
                lock.release()
                return _CachedFile(hit)
            self._make_room(ref)
            writer = self.store.writer(ref.label(), expected_size=ref.size)
            return _Filling(self, ref, self.server.stream(ref.id, ref.size), writer, lock)
        except BaseException:
            if lock.locked():
                lock.release()
            raise

    def _lock(self, artifact_id: str) -> threading.Lock:
        with self.guard:
            return self.locks.setdefault(artifact_id, threading.Lock())

    def _cached(self, ref: StreamRef) -> Path | None:
        row = StoredArtifact.objects.filter(server_id=ref.id, name=ref.name).first()
        if row is None or not self.store.has(row.sha256):
            return None
        StoredArtifact.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
        return self.store.path(row.sha256)

    def _make_room(self, ref: StreamRef) -> None:
        """Evict cached artifacts this deployment does not use, oldest first, until `ref` fits;
        fail when it cannot (Mender: a cache that cannot fit fails the deployment)."""
        if not self.max_bytes:
            return
        need = ref.size or 0
        used = sum(e.size for e in self.store.entries())
        for row in _unused_cached(self.since).order_by("last_used_at"):
            if used + need <= self.max_bytes:
                break
            used -= row.size
            _evict(self.store, row)
        if used + need > self.max_bytes:
            raise StoreError(
                f"{need} bytes do not fit ArtifactsCache.MaxSizeBytes ({self.max_bytes}; "
                f"{used} bytes are kept for this deployment and bundles)",
                ref.label(),
            )

    def keep(self, ref: StreamRef, writer: StoreWriter) -> None:
        stored = writer.commit()
        info = ArtifactReader(io.BytesIO(ref.head), keys=self.keys).read_header()
        stored_artifact_record(
            info, sha256=stored.sha256, size=stored.size, origin="server", server_id=ref.id
        )
        StoredArtifact.objects.filter(sha256=stored.sha256).update(last_used_at=timezone.now())


class _CachedFile:
    def __init__(self, path: Path) -> None:
        self.file: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.size: int | None = path.stat().st_size

    def read(self, n: int = -1) -> bytes:
        return self.file.read(n)

    def verified(self) -> None:
        """Already cached."""

    def close(self) -> None:
        self.file.close()


class _Filling:
    """The server's bytes, written into the cache on the way; kept only once verified."""

    def __init__(
        self,
        cache: CachingStreams,
        ref: StreamRef,
        source: ArtifactStream,
        writer: StoreWriter,
        lock: threading.Lock,
    ) -> None:
        self.cache = cache
        self.ref = ref
        self.source = source
        self.size = source.size
        self.writer = writer
        self.lock = lock
        self.kept = False

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        if data:
            self.writer.write(data)
        return data

    def verified(self) -> None:
        self.cache.keep(self.ref, self.writer)
        self.kept = True

    def close(self) -> None:
        try:
            self.source.close()
            if not self.kept:
                self.writer.abort()  # a failed or cut-off stream leaves nothing in the cache
        finally:
            if self.lock.locked():
                self.lock.release()


def _unused_cached(since: datetime.datetime) -> QuerySet[StoredArtifact]:
    """Cached server artifacts not used since `since` that no bundle holds."""
    in_bundles = BundleArtifact.objects.values_list("artifact_id", flat=True)
    rows = StoredArtifact.objects.filter(origin="server", last_used_at__lt=since).exclude(pk__in=in_bundles)
    return rows.exclude(sha256__in=delta_bases())  # a stored delta's base stays (docs/bytes.md)


def _evict(store: ArtifactStore, row: StoredArtifact) -> None:
    sha = row.sha256
    row.delete()
    with contextlib.suppress(FileNotFoundError):
        store.remove(sha)


def cache_clean_after_deployment(env: Environment, *, since: datetime.datetime | None) -> int:
    """Mender's rule: at the end of every deployment, cached artifacts it did not use go.
    Only with the cache enabled; artifacts bundles hold are not cache entries. Returns the count.
    Stream references no paused deployment names go too."""
    rows: list[StoredArtifact] = []
    store = artifact_store(env)
    try:
        _refs_clean(env.datastore / "streams")
        if env.config.artifacts_cache_enabled and since is not None:
            rows = list(_unused_cached(since))
        for row in rows:
            _evict(store, row)
    except Exception:  # like retention: never changes the deployment's outcome
        log.exception("artifacts cache clean-up after the deployment failed")
        return 0
    if rows:
        log.info("artifacts cache: removed %d artifact(s) this deployment did not use", len(rows))
    return len(rows)


def _refs_clean(directory: Path) -> None:
    """Stream references only a deployment still in progress (paused) may need; the rest go."""
    if not directory.is_dir():
        return
    needed = set()
    for deployment in Deployment.objects.exclude(status__in=[s.value for s in Deployment.TERMINAL]):
        plan = deployment.planned()
        needed |= {c["artifact"] for c in plan["components"]} if plan else set()
    for path in directory.glob(f"*{STREAM_SUFFIX}"):
        if str(path) not in needed:
            path.unlink(missing_ok=True)
