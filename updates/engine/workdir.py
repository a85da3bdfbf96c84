"""The File-API work tree of one component, and the streaming ``Download`` protocol.

Tree layout and conventions follow the Update Module v3 File API (see
docs/protocol.md §4.5): the tree is written and fsynced before ``Download`` so it
survives power loss; during ``Download`` payloads are served through FIFOs (``stream-next`` +
``streams/<name>``); an interface that exits 0 without ever opening ``stream-next`` gets the
payloads as plain files in ``files/`` instead.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import select
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from updates.engine.calls import CallResult, InterfaceError, RunningCall
from updates.engine.fsutil import fsync_dir, sync_tree

CHUNK = 1024 * 1024
FILE_API_VERSION = "3"
# Payload file names are flat (no directories): Mender's payload-name rule, ASCII only.
_PAYLOAD_NAME = re.compile(r"[\w\-.,]+", re.ASCII)
_POLL_MIN, _POLL_MAX = 0.001, 0.05


@dataclass(frozen=True)
class HeaderFiles:
    artifact_name: str
    artifact_group: str
    payload_type: str
    header_info: bytes
    type_info: bytes
    meta_data: bytes | None


@dataclass(frozen=True)
class CurrentFiles:
    artifact_name: str
    artifact_group: str
    device_type: str


# --------------------------------------------------------------------------------------------
# The tree


def prepare_tree(tree: Path, *, header: HeaderFiles, current: CurrentFiles) -> None:
    """(Re)create the tree from scratch. It is built under a sibling staging name and renamed
    into place, so after a crash ``tree`` is either absent or complete, never half-written."""
    tree = Path(tree).absolute()
    tree.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_path(tree)
    _rmtree(staging)
    _make_dir(staging)
    _write_tree_files(staging, header=header, current=current)
    _rmtree(tree)
    staging.rename(tree)
    fsync_dir(tree.parent)


def remove_tree(tree: Path) -> None:
    # Not fsynced: if a power cut brings the tree back, `Cleanup` runs once more, which the
    # protocol allows (it changes nothing on the system); a flush per component is not worth it.
    tree = Path(tree).absolute()
    _rmtree(tree)
    _rmtree(_staging_path(tree))


def _staging_path(tree: Path) -> Path:
    return tree.with_name(f".{tree.name}.preparing")


def _write_tree_files(root: Path, *, header: HeaderFiles, current: CurrentFiles) -> None:
    head, tmp = root / "header", root / "tmp"
    files = {
        root / "version": f"{FILE_API_VERSION}\n".encode(),
        # current_* carry a trailing newline, header/* do not: the C++ client's (inconsistent) format.
        root / "current_artifact_name": _line(current.artifact_name),
        root / "current_artifact_group": _line(current.artifact_group),
        root / "current_device_type": _line(current.device_type),
        head / "artifact_name": header.artifact_name.encode(),
        head / "artifact_group": header.artifact_group.encode(),
        head / "payload_type": header.payload_type.encode(),
        head / "header-info": header.header_info,
        head / "type-info": header.type_info,
        head / "meta-data": header.meta_data or b"null",
    }
    _make_dir(head)
    _make_dir(tmp)
    for path, data in files.items():
        _write_file(path, data)
    # All of it durable before the caller renames the tree into place.
    sync_tree(root, [*files, head, tmp, root])


def _line(value: str) -> bytes:
    """value + newline; an empty value gives an empty file (e.g. no artifact group)."""
    return f"{value}\n".encode() if value else b""


def _make_dir(path: Path) -> None:
    path.mkdir(mode=0o700)
    path.chmod(0o700)  # mkdir's mode is filtered by the umask


def _write_file(path: Path, data: bytes) -> None:
    """Written, not yet flushed: `_write_tree_files` makes the whole tree durable at once."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        _write_all(fd, data)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


# --------------------------------------------------------------------------------------------
# Download


class CallStarter(Protocol):
    """What Download needs of a runner (`interface.InterfaceRunner`): to start one call."""

    def start(self, argv: Sequence[str], *, cwd: Path, threaded: bool = True) -> RunningCall: ...


class PayloadSource(Protocol):
    """One payload file, readable once. ``read`` may raise (e.g. a checksum mismatch at EOF)."""

    name: str
    size: int

    def read(self, n: int = -1) -> bytes: ...


class DownloadError(Exception):
    """``Download`` failed. ``result`` is the interface call (None if it never started), for the
    step record; ``reason`` says why in one line. Always raised on failure: a returned
    DownloadOutcome means success."""

    def __init__(self, reason: str, *, result: CallResult | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.result = result


@dataclass(frozen=True)
class DownloadOutcome:
    result: CallResult
    mode: Literal["streams", "files"]  # "files": the interface exited 0 without opening stream-next
    files: tuple[str, ...]  # names written into files/ (files mode only)


class _Failed(Exception):
    """Internal: the download failed for this reason; the interface may still be running."""


def run_download(
    runner: CallStarter,
    argv: Sequence[str],
    *,
    tree: Path,
    payloads: Iterable[PayloadSource],
    with_sizes: bool,
) -> DownloadOutcome:
    """Run ``Download``/``DownloadWithFileSizes`` (``argv``) and serve ``payloads`` to it.

    Returns only on success. Every failure (non-zero exit, timeout, streams not fully consumed,
    a payload that raised or had the wrong size, a bad payload name) raises DownloadError, after
    the interface has been stopped. ``stream-next`` and ``streams/`` never outlive the call.
    """
    tree = Path(tree).absolute()
    if not tree.is_dir():
        raise DownloadError(f"work tree {tree} does not exist (prepare_tree first)", result=None)
    _reset_download_entries(tree)
    _make_fifo(tree / "stream-next")  # before the start, so the interface never sees ENOENT
    _make_dir(tree / "streams")
    try:
        try:
            call = runner.start(argv, cwd=tree)
        except InterfaceError as exc:
            raise DownloadError(str(exc), result=None) from exc
        try:
            files = _serve(call, tree, _guarded(payloads), with_sizes)
        except BaseException as exc:
            _stop(call)
            _rmtree(tree / "files")  # a half-written files/ must not reach ArtifactInstall
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and friends propagate unchanged
            raise _download_error(call, exc) from (exc.__cause__ if isinstance(exc, _Failed) else exc)
    finally:
        _remove_stream_entries(tree)
    result = call.wait()
    if not result.ok:
        raise DownloadError(_describe_exit(result), result=result)
    return DownloadOutcome(result=result, mode="files" if files is not None else "streams", files=files or ())


def _serve(
    call: RunningCall, tree: Path, payloads: Iterator[PayloadSource], with_sizes: bool
) -> tuple[str, ...] | None:
    """Serve every payload through the FIFOs; returns the stored names if files mode kicked in."""
    opened = False  # has the interface ever opened stream-next?
    for payload in payloads:
        name = _check_name(payload.name)
        _make_fifo(tree / "streams" / name)  # before announcing it: no ENOENT for the reader
        if not _announce(call, tree / "stream-next", _stream_line(payload, with_sizes)):
            return _no_reader(call, tree, opened, [payload], payloads)
        opened = True
        _stream(call, tree / "streams" / name, payload)
    # Open and close without writing: the interface reads EOF, i.e. "no more streams".
    if not _announce(call, tree / "stream-next", b""):
        return _no_reader(call, tree, opened, [], payloads)
    return None


def _guarded(payloads: Iterable[PayloadSource]) -> Iterator[PayloadSource]:
    """The payload iterator, with its own errors (e.g. a broken artifact) turned into _Failed."""
    iterator = iter(payloads)
    while True:
        try:
            payload = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            raise _Failed(f"reading the next payload failed: {exc}") from exc
        yield payload


def _stream_line(payload: PayloadSource, with_sizes: bool) -> bytes:
    size = f" {payload.size}" if with_sizes else ""
    return f"streams/{payload.name}{size}\n".encode()


def _no_reader(
    call: RunningCall, tree: Path, opened: bool, pending: list[PayloadSource], rest: Iterator[PayloadSource]
) -> tuple[str, ...]:
    """The interface exited instead of opening stream-next."""
    code = call.poll()
    if not opened and code == 0:
        return _files_mode(tree, itertools.chain(pending, rest))  # lazily: payloads are read in order
    if not opened:
        raise _Failed(f"the interface exited with code {code} without reading any stream")
    raise _Failed(f"the interface exited with code {code} before reading all streams (no final empty read)")


def _download_error(call: RunningCall, exc: Exception) -> DownloadError:
    """The DownloadError for a failure ``exc``, once the interface has been stopped."""
    result = call.wait()
    if result.timed_out:
        reason = _describe_exit(result)
    elif isinstance(exc, _Failed):
        reason = str(exc)
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return DownloadError(reason, result=result)


def _stop(call: RunningCall) -> None:
    """Stop a still-running interface. Past the deadline, wait() does it and records the timeout."""
    if call.poll() is not None:
        return
    if call.expired():
        call.wait()
    else:
        call.kill()


def _describe_exit(result: CallResult) -> str:
    if result.timed_out:
        return f"the interface timed out and was killed after {result.duration:.1f} s"
    return f"the interface exited with code {result.exit_code}"


# ---- FIFO plumbing. Everything is non-blocking plus poll(), so no step can hang: each wait
# ---- also watches the process and the runner timeout (a blocking open/write could not).


def _announce(call: RunningCall, fifo: Path, line: bytes) -> bool:
    """Write one line into stream-next and close it; False if the interface exited first."""
    fd = _open_writer(call, fifo)
    if fd is None:
        return False
    try:
        _write_fifo(call, fd, line, fifo.name)
    finally:
        os.close(fd)
    return True


def _stream(call: RunningCall, fifo: Path, payload: PayloadSource) -> None:
    fd = _open_writer(call, fifo)
    if fd is None:
        raise _Failed(f"the interface exited with code {call.poll()} without reading streams/{fifo.name}")
    try:
        for chunk in _chunks(payload):
            _write_fifo(call, fd, chunk, fifo.name)
    except BaseException:
        # Kill before closing: closing first would hand the reader a clean EOF, and it could
        # take a truncated payload for a complete one.
        _stop(call)
        raise
    finally:
        os.close(fd)


def _open_writer(call: RunningCall, fifo: Path) -> int | None:
    """Open a FIFO for writing once the interface has opened it for reading (ENXIO until then).
    None when the interface exited without opening it."""
    delay = _POLL_MIN
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
        if call.poll() is not None:
            return None
        _check_deadline(call)
        time.sleep(delay)
        delay = min(delay * 2, _POLL_MAX)


def _write_fifo(call: RunningCall, fd: int, data: bytes, name: str) -> None:
    view = memoryview(data)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    while view:
        _check_deadline(call)
        if not poller.poll(100):
            if call.poll() is not None:
                raise _Failed(f"the interface exited with code {call.poll()} before reading all of {name}")
            continue
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue
        except BrokenPipeError:
            raise _Failed(f"the interface closed {name} before reading all of it") from None


def _check_deadline(call: RunningCall) -> None:
    if call.expired():
        raise _Failed("the interface timed out")


def _chunks(payload: PayloadSource) -> Iterator[bytes]:
    """The payload in chunks of at most CHUNK bytes, read to EOF (where a checksum error may
    surface) and checked against the announced size."""
    total = 0
    while True:
        try:
            chunk = payload.read(CHUNK)
        except Exception as exc:
            raise _Failed(f"reading payload {payload.name} failed: {exc}") from exc
        if not chunk:
            break
        total += len(chunk)
        if total > payload.size:
            raise _Failed(f"payload {payload.name} is larger than its size {payload.size}")
        yield chunk
    if total != payload.size:
        raise _Failed(f"payload {payload.name} has {total} bytes, expected {payload.size}")


# ---- files mode


def _files_mode(tree: Path, payloads: Iterable[PayloadSource]) -> tuple[str, ...]:
    """The interface did not want streams: store every payload as a plain file in files/."""
    _remove_stream_entries(tree)
    files_dir = tree / "files"
    _make_dir(files_dir)
    names = tuple(_store_file(files_dir, payload) for payload in payloads)
    fsync_dir(files_dir)
    fsync_dir(tree)
    return names


def _store_file(files_dir: Path, payload: PayloadSource) -> str:
    name = _check_name(payload.name)
    path = files_dir / name
    if path.resolve().parent != files_dir.resolve():
        raise _Failed(f"payload name {name!r} does not stay inside files/")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise _Failed(f"duplicate payload name {name!r}") from None
    try:
        os.fchmod(fd, 0o600)
        for chunk in _chunks(payload):
            _write_all(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    return name


# ---- names and entries


def _check_name(name: str) -> str:
    if not _PAYLOAD_NAME.fullmatch(name) or name in (".", ".."):
        raise _Failed(f"payload name {name!r} is not a flat file name (^[\\w\\-.,]+$)")
    return name


def _make_fifo(path: Path) -> None:
    try:
        os.mkfifo(path, 0o600)
    except FileExistsError:
        raise _Failed(f"duplicate payload name {path.name!r}") from None
    path.chmod(0o600)  # mkfifo's mode is filtered by the umask


def _reset_download_entries(tree: Path) -> None:
    """Leftovers of an interrupted earlier attempt must not leak into this one."""
    _remove_stream_entries(tree)
    _rmtree(tree / "files")


def _remove_stream_entries(tree: Path) -> None:
    for entry in (tree / "stream-next", tree / "streams"):
        if entry.is_symlink() or (entry.exists() and not entry.is_dir()):
            entry.unlink()
        elif entry.exists():
            shutil.rmtree(entry)
