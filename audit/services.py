"""Writes of the audit journal: append an entry, sign the head, prune old step output.

`journal_append` is the one way anything gets into the journal; callers call it inside the
transaction of the change it records, so the change and its entry commit (or vanish) together.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from audit import chain as auditchain
from audit.keys import signing_key
from updates.actors import SYSTEM, Actor
from updates.models import JournalAnchor, JournalEntry, JournalHead, Step

# Entries that close a deployment: the head is signed right after each (issue 11, "anchors").
DEPLOYMENT_ENDS = ("deployment.finished",)
# Every anchor is also a log line (journald, a remote syslog): a copy of the signed head outside
# the database, which `audit verify --anchors FILE` takes back (docs/audit.md).
log = logging.getLogger("orchestrator.audit")


def journal_append(
    *, kind: str, actor: Actor, subject: str = "", data: dict[str, object] | None = None
) -> JournalEntry:
    """Append one entry after the current head (and sign the head when an anchor is due).
    `actor`: who did it; what the engine does within a deployment is its asker's (docs/audit.md).

    Appends are serialised by the head row: PostgreSQL locks it (SELECT … FOR UPDATE) until the
    caller's transaction ends; on SQLite the IMMEDIATE transaction already holds the database's
    write lock. The unique `prev_hash` refuses a second entry after the same head regardless.
    """
    data = data or {}
    row = journal_record(kind=kind, actor=actor, subject=subject, data=data)
    # Positional: the model's fast path (the fields in their declared order), a few µs an entry.
    entry = JournalEntry(row.seq, row.prev, row.hash, row.at, kind, actor.as_json(), subject, data)
    entry._state.adding, entry._state.db = False, connection.alias  # written in this transaction
    return entry


def journal_record(*, kind: str, actor: Actor, subject: str, data: dict[str, object]) -> EntryRow:
    """`journal_append` without the model instance, for callers that keep only the entry's hash
    (the step writer: one entry per finished step, the instance was a tenth of its cost)."""
    rows = _batch.rows
    if rows is not None:
        row = _append(kind, actor, subject, data, _batch.head or _head_locked())
        rows.append(row)
        _batch.head = (row.seq, row.hash)
        return row
    with transaction.atomic():
        row = _append(kind, actor, subject, data, _head_locked())
        _entries_insert([row])
        _head_write(row)
    return row


def journal_lock() -> None:
    """Take the journal's head lock now, before the caller's other rows. A deployment's step
    writer (updates/step_journal.py) locks the head, then references the deployment row; a
    transaction that frees a deployment's slot (a key column: PostgreSQL's FOR UPDATE) and then
    journals would take the two in the other order, and the two deadlock. On SQLite the
    transaction's write lock already serialises them."""
    if _batch.head is None:
        _head_locked()


class EntryRow(NamedTuple):
    """An entry as it goes into the table: `actor` and `data` already as their canonical JSON
    (the same text is inside the hashed entry), `at_iso` as hashed and signed."""

    seq: int
    prev: str
    hash: str
    at: datetime
    at_iso: str
    kind: str
    actor: str
    subject: str
    data: str


def _head_write(row: EntryRow) -> None:
    """Move the head to `row` and sign it (Ed25519, tens of microseconds: docs/audit.md)."""
    private, fingerprint = _signer(settings.DATASTORE_DIR)
    message = auditchain.head_message(seq=row.seq, hash=row.hash, at=row.at_iso, key_fingerprint=fingerprint)
    signature = auditchain.sign(private, message)
    with connection.cursor() as cursor:
        cursor.execute(
            _sql(connection.vendor).head_update, [row.seq, row.hash, row.at_iso, fingerprint, signature]
        )


@functools.cache
def _signer(datastore: object) -> tuple[auditchain.Ed25519PrivateKey, str]:
    """The key and its fingerprint, once per data store (its setting keys the cache: tests move
    it). The setting rather than `key_path()`: building that path cost about what the signature does."""
    private = signing_key()
    return private, auditchain.key_fingerprint(private.public_key())


def _append(
    kind: str, actor: Actor, subject: str, data: dict[str, object], head: tuple[int, str]
) -> EntryRow:
    """The next entry's row after the locked `head` (not inserted yet); signs an anchor when due."""
    seq, prev = head[0] + 1, head[1]
    at = timezone.now()
    at_iso = auditchain.iso(at)
    actor_text, data_text = _actor_text(actor), auditchain.canonical_text(data)
    digest = auditchain.sha256_hex(
        auditchain.entry_canonical(
            seq=seq, prev=prev, at=at_iso, kind=kind, actor=actor_text, subject=subject, data=data_text
        )
    )
    if kind in DEPLOYMENT_ENDS or seq % max(settings.AUDIT_ANCHOR_EVERY, 1) == 0:
        anchor_create(seq=seq, digest=digest)
    return EntryRow(seq, prev, digest, at, at_iso, kind, actor_text, subject, data_text)


@functools.lru_cache(maxsize=256)
def _actor_text(actor: Actor) -> str:
    """An actor's canonical JSON: a few actors write most entries (all of a deployment's steps)."""
    return auditchain.canonical_text(actor.as_json())


def _entries_insert(rows: list[EntryRow]) -> None:
    """One INSERT of prepared rows: the ORM's bulk_create built each row's SQL values field by
    field and serialised the JSON columns a second time, most of the journal's cost per step."""
    adapt = connection.ops.adapt_datetimefield_value
    params = [(r.seq, r.prev, r.hash, adapt(r.at), r.kind, r.actor, r.subject, r.data) for r in rows]
    with connection.cursor() as cursor:
        cursor.executemany(_sql(connection.vendor).entries_insert, params)


def _head_locked() -> tuple[int, str]:
    sql = _sql(connection.vendor)
    if sql.locks and connection.get_autocommit():
        # As the ORM's select_for_update refuses: a lock outside a transaction ends at once.
        raise TransactionManagementError("the journal's head is locked inside a transaction only")
    with connection.cursor() as cursor:
        cursor.execute(sql.head_select)
        found = cursor.fetchone()
    if found is None:
        head = _head_restore()
        return int(head.seq), str(head.hash)
    return int(found[0]), str(found[1])


class _Sql(NamedTuple):
    head_select: str
    head_update: str
    entries_insert: str
    anchor_insert: str
    locks: bool


@functools.cache
def _sql(vendor: str) -> _Sql:
    """The journal's statements, as plain SQL: the ORM spent most of a batch's
    journal time compiling them (≈ 0.7 ms each under load, against ≈ 10 µs to run one). The
    columns are the models' (JournalEntry, JournalHead: no `db_column` renames them)."""
    qn = connection.ops.quote_name
    head, entries = qn(str(JournalHead._meta.db_table)), qn(str(JournalEntry._meta.db_table))
    anchors = qn(str(JournalAnchor._meta.db_table))
    anchor_names = ", ".join(qn(name) for name in ("seq", "hash", "at", "key_fingerprint", "signature"))
    locks = bool(connection.features.has_select_for_update)
    # PostgreSQL's JSON columns are jsonb: the canonical text is cast on the way in.
    json_value = "CAST(%s AS jsonb)" if vendor == "postgresql" else "%s"
    columns = ("seq", "prev_hash", "hash", "at", "kind", "actor", "subject", "data")
    names = ", ".join(qn(name) for name in columns)
    values = ", ".join(json_value if name in ("actor", "data") else "%s" for name in columns)
    assignments = ", ".join(
        f"{qn(name)} = %s" for name in ("seq", "hash", "at", "key_fingerprint", "signature")
    )
    singleton = f"{qn('id')} = 1"
    return _Sql(
        head_select=f"SELECT {qn('seq')}, {qn('hash')} FROM {head} WHERE {singleton}"
        + (" FOR UPDATE" if locks else ""),
        head_update=f"UPDATE {head} SET {assignments} WHERE {singleton}",
        entries_insert=f"INSERT INTO {entries} ({names}) VALUES ({values})",
        anchor_insert=f"INSERT INTO {anchors} ({anchor_names}) VALUES (%s, %s, %s, %s, %s) "
        f"ON CONFLICT ({qn('seq')}) DO NOTHING",
        locks=locks,
    )


def _head_restore() -> JournalHead:
    """The migration creates the head row; a database flushed since (tests, a restore of the
    tables only) gets it back from the last entry rather than refusing every change."""
    last = JournalEntry.objects.order_by("-seq").first()
    seq, digest = (last.seq, last.hash) if last else (0, auditchain.GENESIS)
    head: JournalHead
    head, _ = JournalHead.objects.select_for_update().get_or_create(
        pk=1, defaults={"seq": seq, "hash": digest}
    )
    return head


class _Batch(threading.local):
    rows: list[EntryRow] | None = None
    head: tuple[int, str] | None = None


_batch = _Batch()


@contextlib.contextmanager
def journal_batch() -> Iterator[None]:
    """Inside the caller's transaction: every append in the block shares one head lock, one
    INSERT and one head UPDATE (the journal's group commit keeps its speed)."""
    _batch.rows, _batch.head = [], None
    try:
        yield
        if _batch.rows:
            _entries_insert(_batch.rows)
            _head_write(_batch.rows[-1])  # one signature per batch
    finally:
        _batch.rows, _batch.head = None, None


def anchor_create(*, seq: int, digest: str) -> JournalAnchor:
    """Sign (seq, hash): a chain rewritten later, however consistent, no longer matches it.
    An anchor already signed at `seq` stays (a chain rewound and rewritten is then caught by it)."""
    private, fingerprint = _signer(settings.DATASTORE_DIR)
    at = auditchain.iso(timezone.now())
    message = auditchain.anchor_message(seq=seq, hash=digest, at=at, key_fingerprint=fingerprint)
    moment = datetime.fromisoformat(at)
    signature = auditchain.sign(private, message)
    # One plain INSERT: the ORM's get_or_create (a SELECT, a savepoint, the INSERT) cost as
    # much as a hundred entries' worth of the rest (one anchor every AUDIT_ANCHOR_EVERY entries).
    pk = _anchor_insert(seq, digest, moment, fingerprint, signature)
    anchor = (
        JournalAnchor.objects.get(seq=seq)
        if pk is None
        else JournalAnchor(
            id=pk, seq=seq, hash=digest, at=moment, key_fingerprint=fingerprint, signature=signature
        )
    )
    anchor._state.adding, anchor._state.db = False, connection.alias
    # Logged once committed: a rolled-back anchor must not reach the log copy.
    transaction.on_commit(
        functools.partial(
            _anchor_log,
            auditchain.Anchor(
                seq=anchor.seq,
                hash=anchor.hash,
                at=auditchain.iso(anchor.at),
                key_fingerprint=anchor.key_fingerprint,
                signature=anchor.signature,
            ),
        )
    )
    return anchor


def _anchor_insert(seq: int, digest: str, at: datetime, fingerprint: str, signature: str) -> int | None:
    """The new anchor row's id; None when an anchor at `seq` exists already (it is kept)."""
    sql = _sql(connection.vendor)
    returning = bool(connection.features.can_return_columns_from_insert)
    params = (seq, digest, connection.ops.adapt_datetimefield_value(at), fingerprint, signature)
    with connection.cursor() as cursor:
        cursor.execute(
            sql.anchor_insert + (" RETURNING " + connection.ops.quote_name("id") if returning else ""), params
        )
        if returning:
            found = cursor.fetchone()
            return None if found is None else int(found[0])
        return int(cursor.lastrowid) if cursor.rowcount == 1 else None  # SQLite before 3.35


def _anchor_log(anchor: auditchain.Anchor) -> None:
    """One INFO line per anchor, the anchor's JSON at its end (what `--anchors FILE` reads back)."""
    line = auditchain.canonical(anchor.as_json()).decode()
    log.info(
        "journal anchor %s",
        line,
        extra={"seq": anchor.seq, "hash": anchor.hash, "signature": anchor.signature},
    )


def anchor_head() -> JournalAnchor | None:
    """Sign the current head unless it is signed already (an export must end on an anchor)."""
    with transaction.atomic():
        seq, digest = _head_locked()
        if seq == 0:
            return None
        existing = JournalAnchor.objects.filter(seq=seq).first()
        return existing or anchor_create(seq=seq, digest=digest)


def audit_prune(*, before: datetime, actor: Actor) -> int:
    """Clear the output of steps that ended before `before`; the journal keeps their digests.

    The pruning is itself an entry, in the same transaction: a report can say why a step's
    output is gone, and nobody can clear output unnoticed by pretending it was retention.
    """
    with transaction.atomic():
        steps = Step.objects.filter(ended_at__lt=before).exclude(stdout="", stderr="")
        ids = list(steps.values_list("pk", flat=True))
        Step.objects.filter(pk__in=ids).update(stdout="", stderr="")
        journal_append(
            kind="audit.pruned",
            actor=actor,
            subject="steps",
            data={"before": auditchain.iso(before), "steps": len(ids), "step_ids": _ranges(ids)},
        )
    return len(ids)


def audit_prune_by_policy(*, actor: Actor) -> int:
    """The configured retention (ORCH_AUDIT_OUTPUT_RETENTION_DAYS); nothing when it is 0."""
    days = settings.AUDIT_OUTPUT_RETENTION_DAYS
    if days <= 0:
        return 0
    before = timezone.now() - timedelta(days=days)
    if not Step.objects.filter(ended_at__lt=before).exclude(stdout="", stderr="").exists():
        return 0  # nothing to clear: no entry either, or every deployment would add one
    return audit_prune(before=before, actor=actor)


def _ranges(ids: list[int]) -> list[list[int]]:
    """[[first, last], …] runs of consecutive ids: short, whatever the number of steps."""
    runs: list[list[int]] = []
    for pk in sorted(ids):
        if runs and runs[-1][1] == pk - 1:
            runs[-1][1] = pk
        else:
            runs.append([pk, pk])
    return runs


def head_seal_after_upgrade(*, migrations: list[str]) -> JournalEntry | None:
    """An appliance upgraded to a signed head (0009_seal) has a head nobody signed yet, which
    `audit verify` rightly refuses: the migration itself is journaled (by the appliance), and
    that append signs the head. Nothing happens on a fresh or an already signed journal."""
    head = JournalHead.objects.filter(pk=1).first()
    if head is None or head.seq == 0 or head.signature:
        return None
    return journal_append(kind="journal.migrated", actor=SYSTEM, data={"migrations": migrations})
