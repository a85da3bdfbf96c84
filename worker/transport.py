"""kombu's file-system transport, made safe for several processes and for bad files (issue 15).

Same on-disk layout and interface as `kombu.transport.filesystem` (one `<ms>_<uuid>.<queue>.msg`
JSON file per message in the data folder, exchange tables in the control folder), so the settings
and the folders do not change. What kombu 5.7 gets wrong, and what this subclass does instead:

- kombu creates the message file, then locks and writes it; a reader lists and moves any `*.msg`
  without the lock, so it may read an empty file, and the JSONDecodeError is unrecoverable for
  the Celery consumer (the worker dies). Here a message is written under `tmp/`, fsynced, and
  renamed into the queue: a reader only ever sees whole messages.
- kombu moves a message out with `shutil.move` to the system temp dir, a copy + delete when that
  is another file system, so two workers can both take it. Here a reader claims a message by
  `rename(2)` into `claimed/` beside the queue: exactly one rename succeeds.
- A file that cannot be read or decoded as a kombu message (empty, truncated, garbage) is moved
  to `rejected/` with a log line naming it, and the reader goes on to the next one.
- The exchange table in the control folder is created whole (link of a complete file), so a
  producer never reads a table another one is still writing.

There are still no acknowledgements: a message claimed by a worker that is killed before it
starts the task stays in `claimed/`. The deployment it was for is found by its database row when
a worker starts (`deployments_recover`), which is why nothing depends on the message.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

from updates.engine.fsutil import fsync_dir

log = logging.getLogger("orchestrator.transport")

# kombu's JSON (it also encodes dates, UUIDs, decimals) and text helpers, typed.
_dumps: Callable[[Any], str] = dumps
_loads: Callable[[str], Any] = loads
_to_bytes: Callable[[str], bytes] = str_to_bytes
_to_str: Callable[[bytes], str] = bytes_to_str

# Sub-folders of the data folders. Their names have no dot, so kombu's `<name>.<queue>.msg`
# matching (here and in `_size`/`_purge`) never mistakes one for a message.
TMP = "tmp"
CLAIMED = "claimed"
REJECTED = "rejected"


class Channel(filesystem.Channel):
    """Atomic publish (write, fsync, rename), claim by rename, and bad files set aside."""

    # kombu names the payload `payload` here and `message` in AbstractChannel; we keep filesystem's.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        folder = Path(self.data_folder_out)
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        try:
            _write_whole(_subfolder(folder, TMP) / name, _to_bytes(_dumps(payload)))
            (folder / TMP / name).rename(folder / name)
            fsync_dir(folder)  # the message survives a power cut once the call returns
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory {folder}") from exc

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        folder = Path(self.data_folder_in)
        wanted = f"{queue}.msg"
        for name in sorted(entry.name for entry in folder.iterdir()):
            if name.partition(".")[2] != wanted:
                continue
            claimed = _subfolder(folder, CLAIMED) / name
            try:
                (folder / name).rename(claimed)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            except OSError as exc:  # e.g. no permission: say so, and leave it for a fixed worker
                log.error("cannot claim message file %s: %s", folder / name, exc)
                continue
            try:
                message = self._decoded(claimed.read_bytes())
            except Exception as exc:  # whatever is wrong with one file must not stop the consumer
                _reject(folder, claimed, exc)
                continue
            self._processed(claimed)
            return message
        raise Empty()

    def _decoded(self, raw: bytes) -> dict[str, Any]:
        """The message as the virtual channel will read it, checked now: a KeyError or a bad
        body encoding later, inside the consumer, would kill the worker like a bad JSON."""
        if not raw:
            raise ValueError("empty file")
        message = _loads(_to_str(raw))
        properties = message.get("properties") if isinstance(message, dict) else None
        if not isinstance(properties, dict) or "delivery_tag" not in properties:
            raise ValueError("not a kombu message (no properties.delivery_tag)")
        if message.get("body"):
            self.decode_body(message["body"], properties.get("body_encoding"))
        return dict(message)

    def _processed(self, claimed: Path) -> None:
        if not self.store_processed:
            claimed.unlink(missing_ok=True)
            return
        target = Path(self.processed_folder)
        target.mkdir(parents=True, exist_ok=True)
        claimed.replace(target / claimed.name)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str | None, queue: str) -> None:
        # kombu creates a missing table with open("wb") and only then locks it: a producer
        # reading it in between gets an empty file. Create it whole first; kombu then updates
        # the existing file under its lock.
        table: Path = self._exchange_file(exchange)  # type: ignore[attr-defined]  # not in celery-types
        if not table.exists():
            table.parent.mkdir(parents=True, exist_ok=True)
            _create_whole(table, b"[]")
        super()._queue_bind(exchange, routing_key, pattern, queue)


class Transport(filesystem.Transport):
    """`CELERY_BROKER_TRANSPORT = "worker.transport:Transport"` with a `filesystem://` URL."""

    Channel = Channel


def _subfolder(folder: Path, name: str) -> Path:
    sub = folder / name
    sub.mkdir(exist_ok=True)
    return sub


def _write_whole(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _create_whole(path: Path, data: bytes) -> None:
    """Create `path` holding `data`, complete from the moment it exists; keep it if it exists."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    _write_whole(tmp, data)
    try:
        path.hardlink_to(tmp)  # unlike rename, never replaces a table another process made
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def _reject(folder: Path, claimed: Path, exc: Exception) -> None:
    target = _subfolder(folder, REJECTED) / claimed.name
    try:
        claimed.rename(target)
    except OSError as move_error:
        log.error("unreadable message file %s could not be set aside (%s): %s", claimed, move_error, exc)
        return
    log.error("rejected message file %s (moved to %s): %s", claimed.name, target, exc)
