"""Backup, restore and schema migration of the appliance itself (docs/operations.md).

`backup_create` writes one `tar.gz`: the database (SQLite through its online backup API, which
copies a consistent snapshot while the web and the worker write; PostgreSQL through `pg_dump -Fc`)
and the data store's files the history needs. `restore_prepare` unpacks and checks a backup
beside the live data (nothing live is touched), `restore_apply` swaps it in. `migrate_run`
applies pending migrations after an automatic `pre-migrate-*` backup.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import DatabaseError, connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder

from audit.services import head_seal_after_upgrade
from updates import selectors
from updates.engine import backuparchive as archive
from updates.engine.errors import BusyError, InvalidInput, OrchestratorError
from updates.engine.fsutil import fsync_dir
from updates.engine.version import VERSION
from updates.liveness import owner_alive, owner_pid
from updates.models import Deployment

Echo = Callable[[str], None]

# Rebuilt by the appliance or only meaningful to a live process: never backed up, never replaced.
# `work/` is handled apart (see `_work_dirs`).
EXCLUDED = frozenset({"queue", "uploads", "static", "workers", "downloads", "work", "backups"})
PRE_MIGRATE_PREFIX = "pre-migrate-"


class RestoreRefused(OrchestratorError):
    """The archive is not one this code can restore (unsafe, tampered, newer schema); nothing
    was touched."""

    code = "invalid_backup"
    exit_code = InvalidInput.exit_code
    http_status = 422


class MigrationFailed(OrchestratorError):
    """A migration raised; the backup taken before it is how to go back."""

    code = "migration_failed"


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    manifest: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        summary = {k: v for k, v in self.manifest.items() if k != "members"}
        return {
            "path": str(self.path),
            "size": self.size,
            **summary,
            "members": len(self.manifest["members"]),
        }


# ----- what is where -----------------------------------------------------------------------------


def datastore_dir() -> Path:
    return Path(settings.DATASTORE_DIR)


def backups_dir() -> Path:
    return datastore_dir() / "backups"


def _engine() -> str:
    return "sqlite" if connection.vendor == "sqlite" else "postgresql"


def _sqlite_path() -> Path:
    return Path(str(connection.settings_dict["NAME"]))


def _is_database_file(name: str) -> bool:
    # The live SQLite files go in through the backup API, never as files; test databases never.
    return ".sqlite3" in name or name.endswith(("-wal", "-shm", "-journal"))


def _managed_entries(root: Path) -> list[str]:
    """Top-level names of the data store that a backup holds and a restore replaces."""
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.name not in EXCLUDED
        and not p.name.startswith(".")
        and not _is_database_file(p.name)
        and not p.is_symlink()
    )


def _work_dirs() -> list[Path]:
    """The work dirs of deployments in progress: their File-API trees hold the update modules'
    state between states (and the session log used to end leftovers), which `resume` needs.
    Finished deployments' trees are scratch."""
    try:
        running = selectors.deployment_in_progress()
    except DatabaseError:
        return []
    work = Path(running.work_dir) if running and running.work_dir else None
    return [work] if work and work.is_dir() and work.parent == datastore_dir() / "work" else []


def migrations_applied() -> dict[str, list[str]]:
    applied: dict[str, list[str]] = {}
    for app, name in sorted(MigrationRecorder(connection).applied_migrations()):
        applied.setdefault(app, []).append(name)
    return applied


# ----- backup ------------------------------------------------------------------------------------


def _utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def backup_default_path(*, prefix: str = "backup-") -> Path:
    return backups_dir() / f"{prefix}{_utc_stamp()}.tar.gz"


def backup_create(*, output: Path | None = None, prefix: str = "backup-", echo: Echo = print) -> BackupResult:
    """One consistent backup in one file, written under a temporary name and renamed when
    complete. The database is copied first: files added after it (a new manifest) are harmless
    extras, while the other order could miss a file the copied history refers to."""
    path = (output or backup_default_path(prefix=prefix)).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        manifest = _backup_write(partial, echo=echo)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return BackupResult(path=path, size=path.stat().st_size, manifest=manifest)


def _backup_write(partial: Path, *, echo: Echo) -> dict[str, Any]:
    manifest = _manifest_base()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it holds the secrets
    with (
        os.fdopen(fd, "wb") as raw,
        tempfile.TemporaryDirectory(prefix=".backup-", dir=partial.parent) as tmp,
    ):
        # Level 1: artifacts, most of the bytes, are compressed already; more only costs time.
        with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tar:
            writer = archive.ArchiveWriter(tar=tar, echo=echo)
            db_file = _database_copy(Path(tmp), manifest)
            writer.expected_bytes = _bytes_under([db_file, *_datastore_paths()])
            writer.add_file(db_file, f"database/{db_file.name}")
            manifest["included"] = _datastore_add(writer)
            manifest["bytes"] = writer.total_bytes
            writer.add_manifest(manifest)
            manifest["members"] = writer.members
        raw.flush()
        os.fsync(raw.fileno())
    return manifest


def _manifest_base() -> dict[str, Any]:
    now = datetime.now(UTC)
    try:
        running = selectors.deployment_in_progress()
    except DatabaseError:  # not migrated yet: a backup of what there is
        running = None
    return {
        "format": archive.FORMAT_VERSION,
        "appliance_version": VERSION,
        "created": now.isoformat(),
        "created_ts": now.timestamp(),
        "database": {"engine": _engine()},
        "migrations": migrations_applied(),
        "datastore": str(datastore_dir()),
        "deployment_in_progress": {"id": running.pk, "status": running.status} if running else None,
    }


def _database_copy(tmp: Path, manifest: dict[str, Any]) -> Path:
    if _engine() == "sqlite":
        out = tmp / "orchestrator.sqlite3"
        _sqlite_backup(_sqlite_path(), out)
    else:
        out = tmp / "orchestrator.pgdump"
        _pg_run(["pg_dump", "-Fc", "-f", str(out)])
    manifest["database"]["file"] = out.name
    return out


def _sqlite_backup(source: Path, out: Path) -> None:
    """SQLite's online backup: one step under one read transaction, so a consistent snapshot
    even while others write (WAL: writers are not blocked while it reads)."""
    src = sqlite3.connect(source, timeout=20)
    dst = sqlite3.connect(out)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        dst.close()
        src.close()


def _pg_run(argv: list[str]) -> None:
    """`pg_dump`/`psql` with the connection's parameters; no shell, a password via env."""
    db = connection.settings_dict
    args = [*argv, "--no-password", "--dbname", str(db["NAME"])]
    for flag, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
        if db.get(key):
            args += [flag, str(db[key])]
    _run(args, env={"PGPASSWORD": str(db["PASSWORD"])} if db.get("PASSWORD") else None)


def _run(args: list[str], *, env: dict[str, str] | None) -> None:
    done = subprocess.run(
        args, env={**os.environ, **(env or {})}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise OrchestratorError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}")


def _datastore_paths() -> list[Path]:
    root = datastore_dir()
    return [root / name for name in _managed_entries(root)] + list(_work_dirs())


def _bytes_under(paths: list[Path]) -> int:
    """The regular files' bytes a backup will read (a hard-linked file once, as tar stores it)."""
    total, seen = 0, set()
    for top in paths:
        walked: Iterable[tuple[str, list[str], list[str]]]
        walked = [(str(top.parent), [], [top.name])] if top.is_file() else os.walk(top)
        for dirpath, _dirs, files in walked:
            for name in files:
                try:
                    info = (Path(dirpath) / name).lstat()
                except OSError:
                    continue
                if stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    total += info.st_size
    return total


def _datastore_add(writer: archive.ArchiveWriter) -> list[str]:
    root = datastore_dir()
    included = []
    for name in _managed_entries(root):
        path = root / name
        if path.is_dir():
            writer.add_tree(path, f"datastore/{name}")
        else:
            writer.add_file(path, f"datastore/{name}")
        included.append(name)
    for work in _work_dirs():
        writer.add_tree(work, f"datastore/work/{work.name}")
        included.append(f"work/{work.name}")
    return included


# ----- restore -----------------------------------------------------------------------------------


@dataclass
class PreparedRestore:
    """A checked backup unpacked in a scratch dir inside the data store (same file system:
    renames are atomic). `restore_apply` or `restore_discard` ends it."""

    extracted: archive.Extracted
    pending: list[str] = field(default_factory=list)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.extracted.manifest


@dataclass(frozen=True)
class RestoreResult:
    deployments: int
    active_manifest: str | None
    system: str
    migrated: list[str]
    backup: dict[str, Any]


def restore_check_idle() -> None:
    """BusyError naming the live workers or the deployment whose runner is alive."""
    workers = selectors.live_workers()
    if workers:
        names = ", ".join(f"{w.name} (pid {w.pid} on {w.hostname})" for w in workers)
        raise BusyError(f"workers are live: {names}; stop them first")
    try:
        running = selectors.deployment_in_progress()
    except DatabaseError:  # no database (destroyed) or no tables yet: nothing runs
        return
    if running and running.status in Deployment.RUNNABLE and owner_alive(running.owner):
        raise BusyError(f"deployment {running.pk} is running (pid {owner_pid(running.owner)}); wait for it")


def restore_prepare(*, source: Path) -> PreparedRestore:
    """Unpack and check everything before anything live is touched; RestoreRefused names the
    member and the problem."""
    root = datastore_dir()
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".restore-", dir=root))
    try:
        extracted = archive.archive_extract(source, scratch, free_bytes=lambda: shutil.disk_usage(root).free)
        _schema_check(extracted.manifest)
        _engine_check(extracted.manifest)
    except archive.ArchiveError as exc:
        archive.remove_tree(scratch)
        raise RestoreRefused(f"{source}: {exc}") from None
    except BaseException:
        archive.remove_tree(scratch)
        raise
    return PreparedRestore(extracted=extracted)


def _schema_check(manifest: dict[str, Any]) -> None:
    """A backup from a newer schema (migrations this code lacks) cannot be brought forward."""
    from django.db.migrations.loader import MigrationLoader

    known = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    unknown = [
        f"{app}.{name}"
        for app, names in manifest["migrations"].items()
        for name in names
        if (app, name) not in known
    ]
    if unknown:
        raise archive.ArchiveError(
            archive.MANIFEST_NAME,
            f"from a newer schema: migrations this code does not have: {', '.join(sorted(unknown))} "
            f"(backup of appliance {manifest.get('appliance_version')}, this is {VERSION})",
        )


def _engine_check(manifest: dict[str, Any]) -> None:
    engine = manifest["database"].get("engine")
    if engine != _engine():
        raise archive.ArchiveError(
            archive.MANIFEST_NAME, f"a {engine} database; this appliance runs on {_engine()}"
        )


def restore_discard(prepared: PreparedRestore) -> None:
    archive.remove_tree(prepared.extracted.root)


def restore_apply(prepared: PreparedRestore) -> RestoreResult:
    """Swap the checked backup in: PostgreSQL first (one transaction), then the data store's
    entries (and the SQLite file) by renames, undone if one fails; then migrate forward."""
    try:
        if _engine() == "postgresql":
            _pg_restore(prepared.extracted.database)
        _swap_in(prepared.extracted)
    finally:
        restore_discard(prepared)
    connections.close_all()
    migrated = _migrate_pending()
    return _restore_result(prepared.manifest, migrated)


def _swap_in(extracted: archive.Extracted) -> None:
    root = datastore_dir()
    os.sync()  # the unpacked files are on disk before a rename makes them the live ones
    aside = extracted.root / "old"
    aside.mkdir()
    moves: list[tuple[Path, Path]] = []  # (from, to), in the order done
    try:
        for name in _managed_entries(root):
            moves.append(_move(root / name, aside / name))
        if _engine() == "sqlite":
            _swap_sqlite(extracted, aside, moves)
        _swap_work(extracted, aside, moves)
        for name in _managed_entries(extracted.datastore):
            moves.append(_move(extracted.datastore / name, root / name))
    except BaseException:
        for src, dst in reversed(moves):
            dst.replace(src)
        raise
    fsync_dir(root)


def _swap_sqlite(extracted: archive.Extracted, aside: Path, moves: list[tuple[Path, Path]]) -> None:
    """The live file and its -wal/-shm go aside together: a stale WAL replayed onto the restored
    file would corrupt it."""
    connections.close_all()
    live = _sqlite_path()
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = live.with_name(live.name + suffix)
        if path.exists():
            moves.append(_move(path, aside / f"db{suffix}"))
    extracted.database.chmod(0o600)
    moves.append(_move(extracted.database, live))


def _swap_work(extracted: archive.Extracted, aside: Path, moves: list[tuple[Path, Path]]) -> None:
    """A deployment interrupted at backup time gets its work dir back (for `resume`)."""
    saved = extracted.datastore / "work"
    if not saved.is_dir():
        return
    live = datastore_dir() / "work"
    live.mkdir(exist_ok=True)
    (aside / "work").mkdir()
    for tree in sorted(saved.iterdir()):
        if (live / tree.name).exists():
            moves.append(_move(live / tree.name, aside / "work" / tree.name))
        moves.append(_move(tree, live / tree.name))


def _move(src: Path, dst: Path) -> tuple[Path, Path]:
    src.replace(dst)
    return (src, dst)


def _pg_restore(dump: Path) -> None:
    """All or nothing: `pg_restore --clean --if-exists --no-owner` writes the restore as SQL,
    and psql runs it in one transaction after dropping the current tables (a newer schema's
    tables, which the dump lacks, would stand in the way of the forward migration)."""
    script, drop = dump.with_suffix(".sql"), dump.with_suffix(".drop.sql")
    _run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--file", str(script), str(dump)], env=None)
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
    quoted = ", ".join(connection.ops.quote_name(t) for t in tables)
    drop.write_text(f"DROP TABLE IF EXISTS {quoted} CASCADE;\n" if tables else "")
    connections.close_all()
    psql = ["psql", "--no-psqlrc", "--quiet", "--single-transaction", "--set", "ON_ERROR_STOP=1"]
    _pg_run([*psql, "--file", str(drop), "--file", str(script)])


def _restore_result(manifest: dict[str, Any], migrated: list[str]) -> RestoreResult:
    pointers = selectors.active_manifests()
    return RestoreResult(
        deployments=Deployment.objects.count(),
        active_manifest=pointers.active.name if pointers and pointers.active else None,
        system=selectors.system_version().message,
        migrated=migrated,
        backup={
            k: manifest[k] for k in ("created", "appliance_version", "included", "deployment_in_progress")
        },
    )


# ----- migrate -----------------------------------------------------------------------------------


def migrations_pending(*, app: str | None = None, target: str | None = None) -> list[str]:
    """`app.name` of every migration to apply (or unapply, for a target behind)."""
    executor = MigrationExecutor(connection)
    return [
        f"{m.app_label}.{m.name}"
        for m, _backwards in executor.migration_plan(_targets(executor, app, target))
    ]


def _targets(
    executor: MigrationExecutor, app: str | None, target: str | None
) -> list[tuple[str, str | None]]:
    if app is None:
        return list(executor.loader.graph.leaf_nodes())
    if app not in executor.loader.migrated_apps:
        raise InvalidInput(f"migrate: no app {app!r} with migrations")
    if target is None:
        return [key for key in executor.loader.graph.leaf_nodes() if key[0] == app]
    if target == "zero":
        return [(app, None)]
    try:
        found = executor.loader.get_migration_by_prefix(app, target)
    except (KeyError, ValueError) as exc:  # AmbiguityError is a ValueError
        raise InvalidInput(f"migrate: no migration {app} {target}: {exc}") from None
    return [(found.app_label, found.name)]


def _has_tables() -> bool:
    """A fresh install (nothing to lose) is migrated without a backup."""
    with connection.cursor() as cursor:
        return bool(connection.introspection.table_names(cursor))


@dataclass(frozen=True)
class MigrateResult:
    applied: list[str]
    backup: BackupResult | None
    pruned: list[Path]


def migrate_run(*, app: str | None = None, target: str | None = None, echo: Echo = print) -> MigrateResult:
    """Apply the pending migrations; a database with tables is backed up first (the newest
    ORCH_BACKUP_KEEP automatic backups are kept). MigrationFailed names that backup."""
    datastore_dir().mkdir(parents=True, exist_ok=True)
    pending = migrations_pending(app=app, target=target)
    if not pending:
        return MigrateResult(applied=[], backup=None, pruned=[])
    backup = backup_create(prefix=PRE_MIGRATE_PREFIX, echo=echo) if _has_tables() else None
    if backup:
        echo(f"backup before migrating: {backup.path}")
    try:
        call_command(
            "migrate", *([app] if app else []), *([target] if target else []), interactive=False, verbosity=0
        )
    except Exception as exc:
        hint = f"; go back with: orchestrator restore {backup.path} --yes" if backup else ""
        raise MigrationFailed(f"migration failed: {exc}{hint}") from exc
    if not migrations_pending():  # the code's own schema: the journal can be written
        head_seal_after_upgrade(migrations=pending)
    return MigrateResult(applied=pending, backup=backup, pruned=backups_prune())


def _migrate_pending() -> list[str]:
    pending = migrations_pending()
    if pending:
        call_command("migrate", interactive=False, verbosity=0)
    return pending


def backups_prune(*, keep: int | None = None) -> list[Path]:
    """Only automatic pre-migrate backups are pruned; manual ones are the operator's."""
    # At least one: the backup just taken is the way back from the migration that follows it.
    keep = max(1, settings.BACKUP_KEEP if keep is None else keep)
    old = sorted(backups_dir().glob(f"{PRE_MIGRATE_PREFIX}*.tar.gz"), reverse=True)[keep:]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def datastore_has_database() -> bool:
    """Whether the configured database exists and was ever migrated, checked without creating it
    (opening a missing SQLite file would create one)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite" and not Path(str(db["NAME"])).is_file():
        return False
    return "django_migrations" in connection.introspection.table_names()


def datastore_prepare() -> None:
    """First use of a fresh appliance, or the first command after an upgrade: create the data
    store and bring the database schema up to date, so no operator has to run `migrate` before
    the first `install`. A database that has data is backed up first (`pre-migrate-*`)."""
    Path(settings.DATASTORE_DIR).mkdir(parents=True, exist_ok=True)
    migrate_run(echo=lambda line: print(line, file=sys.stderr, flush=True))
