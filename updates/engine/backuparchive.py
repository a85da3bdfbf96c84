"""The backup archive (`orchestrator backup` / `restore`): a tar.gz with `backup.json` last.

Pure Python (no Django): writing members while hashing them, and reading an archive back into
a scratch directory while checking every member before anything of the appliance is touched.

Layout: `database/<file>` (the SQLite copy or the `pg_dump -Fc` file), `datastore/<path>` (the
data store's files, hard links kept as hard-link members), and `backup.json` (written last, once
every member's sha256 is known, so a multi-GB artifact is read once).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

from updates.engine.transfer import CountingReader, transfer_report

FORMAT_VERSION = 1
MANIFEST_NAME = "backup.json"
ROOTS = ("database", "datastore")
CHUNK = 1024 * 1024
PROGRESS_BYTES = 64 * 1024 * 1024  # members this large get a progress line
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_MEMBERS = 2_000_000
Echo = Callable[[str], None]


class ArchiveError(Exception):
    """The archive is not a backup this code can restore; `member` names the culprit."""

    def __init__(self, member: str, problem: str) -> None:
        super().__init__(f"{member}: {problem}" if member else problem)
        self.member = member


class _Hashing:
    """A read-only file wrapper that hashes what tarfile copies out of it."""

    def __init__(self, fh: IO[bytes], moved: Callable[[int], None]) -> None:
        self.fh, self.digest, self.moved = fh, hashlib.sha256(), moved

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.digest.update(data)
        self.moved(len(data))
        return data


@dataclass
class ArchiveWriter:
    """Adds members to an open `tar.gz`, recording each regular file's sha256 and size."""

    tar: tarfile.TarFile
    echo: Echo
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    total_bytes: int = 0
    expected_bytes: int | None = None  # what the progress on a terminal counts towards
    read_bytes: int = 0

    def add_file(self, path: Path, arcname: str) -> None:
        info = self.tar.gettarinfo(str(path), arcname)
        info.uname = info.gname = ""
        if info.islnk():  # tarfile saw this inode before: a hard link (a bundle's artifact)
            self.tar.addfile(info)
            self.members[arcname] = {"link": info.linkname}
            return
        if not info.isfile():
            return  # FIFOs of a work dir, sockets: nothing a restore could use
        if info.size >= PROGRESS_BYTES:
            self.echo(f"backup: {arcname} ({info.size / 2**20:.1f} MiB)")
        with path.open("rb") as fh:
            reader = _Hashing(fh, self._moved)
            self.tar.addfile(info, reader)  # read() is all tarfile uses
        self.members[arcname] = {"sha256": reader.digest.hexdigest(), "size": info.size}
        self.total_bytes += info.size

    def _moved(self, count: int) -> None:
        self.read_bytes += count
        transfer_report("backup", self.read_bytes, self.expected_bytes)

    def add_dir(self, path: Path, arcname: str) -> None:
        info = self.tar.gettarinfo(str(path), arcname)
        info.uname = info.gname = ""
        self.tar.addfile(info)

    def add_tree(self, root: Path, arcname: str) -> None:
        """`root` and everything below it, sorted (a stable archive), symlinks skipped."""
        self.add_dir(root, arcname)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            base = Path(dirpath)
            rel = base.relative_to(root)
            for name in dirnames:
                if not (base / name).is_symlink():
                    self.add_dir(base / name, f"{arcname}/{(rel / name).as_posix()}")
            for name in sorted(filenames):
                if not (base / name).is_symlink():
                    self.add_file(base / name, f"{arcname}/{(rel / name).as_posix()}")

    def add_manifest(self, manifest: dict[str, Any]) -> None:
        data = json.dumps({**manifest, "members": self.members}, indent=2, sort_keys=True).encode()
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size, info.mode = len(data), 0o600
        info.mtime = int(manifest.get("created_ts", 0))
        self.tar.addfile(info, io.BytesIO(data))


# ----- reading -----------------------------------------------------------------------------------


def safe_member_name(name: str) -> str:
    """The member's path, or ArchiveError: relative, no `..`, inside one of our roots."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        raise ArchiveError(name, "absolute or malformed path")
    parts = PurePosixPath(name).parts
    if any(part in ("..", ".", "") for part in parts) or name != "/".join(parts):
        raise ArchiveError(name, "path leaves the archive (`..`) or is not normalized")
    if name != MANIFEST_NAME and parts[0] not in ROOTS:
        raise ArchiveError(
            name, f"unexpected top-level entry (expected {MANIFEST_NAME} or {', '.join(ROOTS)}/)"
        )
    return name


@dataclass
class Extracted:
    """An archive unpacked (and checked) into `root`: `root/database/...`, `root/datastore/...`."""

    root: Path
    manifest: dict[str, Any]

    @property
    def datastore(self) -> Path:
        return self.root / "datastore"

    @property
    def database(self) -> Path:
        return self.root / "database" / str(self.manifest["database"]["file"])


def archive_extract(archive: Path, dest: Path, *, free_bytes: Callable[[], int]) -> Extracted:
    """Unpack `archive` into the empty directory `dest`, checking every member's type, path and
    size as it goes, then every sha256 against backup.json. Raises ArchiveError (the caller
    removes `dest`); nothing outside `dest` is written."""
    seen: dict[str, dict[str, Any]] = {}
    try:
        with (
            archive.open("rb") as raw,
            tarfile.open(
                fileobj=cast(IO[bytes], CountingReader(raw, "restore", archive.stat().st_size)), mode="r:gz"
            ) as tar,
        ):
            for count, member in enumerate(_members(tar)):
                if count >= MAX_MEMBERS:
                    raise ArchiveError(member.name, f"more than {MAX_MEMBERS} members")
                seen[member.name] = _extract_member(tar, member, dest, seen, free_bytes)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ArchiveError("", f"not a readable tar.gz archive: {exc}") from exc
    manifest = _manifest_read(dest, seen)
    _check_members(manifest, seen)
    return Extracted(root=dest, manifest=manifest)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (member := tar.next()) is not None:
        yield member


def _extract_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    dest: Path,
    seen: dict[str, dict[str, Any]],
    free_bytes: Callable[[], int],
) -> dict[str, Any]:
    name = safe_member_name(member.name)
    if name in seen:
        raise ArchiveError(name, "appears twice in the archive")
    target = dest / name
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return {"dir": True}
    if member.islnk():
        return _extract_link(member, dest, seen)
    if not member.isfile():
        raise ArchiveError(
            name, "not a regular file, directory or hard link (symlinks and devices are refused)"
        )
    if name == MANIFEST_NAME and member.size > MAX_MANIFEST_BYTES:
        raise ArchiveError(name, f"too large ({member.size} bytes)")
    if member.size > free_bytes():
        raise ArchiveError(name, f"{member.size} bytes do not fit in the free space of the data store's disk")
    return {"sha256": _copy_out(tar, member, target), "size": member.size}


def _extract_link(member: tarfile.TarInfo, dest: Path, seen: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A hard link must point at a regular file met earlier in this archive."""
    link = member.linkname
    try:
        safe_member_name(link)
    except ArchiveError as exc:
        raise ArchiveError(member.name, f"hard link outside the archive ({exc})") from None
    if "sha256" not in seen.get(link, {}):
        raise ArchiveError(member.name, f"hard link to {link}, which is not an earlier regular file")
    target = dest / member.name
    target.parent.mkdir(parents=True, exist_ok=True)
    os.link(dest / link, target)
    return {"link": link}


def _copy_out(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> str:
    source = tar.extractfile(member)
    assert source is not None  # a regular file always has data
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("xb") as out:
        target.chmod((stat.S_IMODE(member.mode) & 0o755) | 0o600)  # no set-id bits
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    os.utime(target, (member.mtime, member.mtime))  # the artifact store evicts by age
    return digest.hexdigest()


def _manifest_read(dest: Path, seen: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if MANIFEST_NAME not in seen:
        raise ArchiveError(MANIFEST_NAME, "missing: not an orchestrator backup")
    try:
        manifest = json.loads((dest / MANIFEST_NAME).read_bytes())
    except ValueError as exc:
        raise ArchiveError(MANIFEST_NAME, f"not JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ArchiveError(MANIFEST_NAME, f"format {found!r}; this code reads format {FORMAT_VERSION}")
    for key in ("members", "database", "migrations"):
        if not isinstance(manifest.get(key), dict):
            raise ArchiveError(MANIFEST_NAME, f"`{key}` missing or not an object")
    return manifest


def _check_members(manifest: dict[str, Any], seen: dict[str, dict[str, Any]]) -> None:
    """Every file member is listed with the sha256 it has; every listed member is present."""
    listed: dict[str, dict[str, Any]] = manifest["members"]
    for name, found in seen.items():
        if name == MANIFEST_NAME or found.get("dir"):
            continue
        expected = listed.get(name)
        if expected is None:
            raise ArchiveError(name, f"not listed in {MANIFEST_NAME}")
        if found != expected:
            raise ArchiveError(name, f"sha256 mismatch or changed (expected {expected}, found {found})")
    for name in listed:
        if name not in seen:
            raise ArchiveError(name, f"listed in {MANIFEST_NAME} but missing from the archive")
    database = f"database/{manifest['database'].get('file')}"
    if database not in seen:
        raise ArchiveError(database, "the database member is missing")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
