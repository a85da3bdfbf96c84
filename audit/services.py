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

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import chain as auditchain
from audit.keys import key_path, signing_key
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
    if _batch.entries is not None:
        return _append(kind, actor, subject, data or {})
    with transaction.atomic():
        entry = _append(kind, actor, subject, data or {})
        entry.save(force_insert=True)
        _head_write(entry)
    return entry


def journal_lock() -> None:
    """Take the journal's head lock now, before the caller's other rows. A deployment's step
    writer (updates/step_journal.py) locks the head, then references the deployment row; a
    transaction that frees a deployment's slot (a key column: PostgreSQL's FOR UPDATE) and then
    journals would take the two in the other order, and the two deadlock. On SQLite the
    transaction's write lock already serialises them."""
    if _batch.head is None:
        _head_locked()


def _head_write(entry: JournalEntry) -> None:
    """Move the head to `entry` and sign it (Ed25519, tens of microseconds: docs/audit.md)."""
    private, fingerprint = _signer(key_path())
    at = auditchain.iso(entry.at)
    message = auditchain.head_message(seq=entry.seq, hash=entry.hash, at=at, key_fingerprint=fingerprint)
    JournalHead.objects.filter(pk=1).update(
        seq=entry.seq,
        hash=entry.hash,
        at=at,
        key_fingerprint=fingerprint,
        signature=auditchain.sign(private, message),
    )


@functools.cache
def _signer(path: object) -> tuple[auditchain.Ed25519PrivateKey, str]:
    """The key and its fingerprint, once per key file (the path keys the cache: tests move it)."""
    private = signing_key()
    return private, auditchain.key_fingerprint(private.public_key())


def _append(kind: str, actor: Actor, subject: str, data: dict[str, object]) -> JournalEntry:
    """The next entry (unsaved), after the locked head; signs the head when an anchor is due."""
    seq, prev = _batch.head or _head_locked()
    at = timezone.now()
    actor_json = actor.as_json()
    body = auditchain.entry_body(
        seq=seq + 1, prev=prev, at=at, kind=kind, actor=actor_json, subject=subject, data=data
    )
    digest = auditchain.sha256_hex(auditchain.canonical(body))
    entry = JournalEntry(
        seq=seq + 1,
        prev_hash=prev,
        hash=digest,
        at=at,
        kind=kind,
        actor=actor_json,
        subject=subject,
        data=data,
    )
    if _batch.entries is not None:
        _batch.entries.append(entry)
        _batch.head = (entry.seq, digest)
    if kind in DEPLOYMENT_ENDS or entry.seq % max(settings.AUDIT_ANCHOR_EVERY, 1) == 0:
        anchor_create(seq=entry.seq, digest=digest)
    return entry


def _head_locked() -> tuple[int, str]:
    head = JournalHead.objects.select_for_update().filter(pk=1).first() or _head_restore()
    return int(head.seq), str(head.hash)


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
    entries: list[JournalEntry] | None = None
    head: tuple[int, str] | None = None


_batch = _Batch()


@contextlib.contextmanager
def journal_batch() -> Iterator[None]:
    """Inside the caller's transaction: every append in the block shares one head lock, one
    bulk INSERT and one head UPDATE (the journal's group commit keeps its speed)."""
    _batch.entries, _batch.head = [], None
    try:
        yield
        if _batch.entries:
            JournalEntry.objects.bulk_create(_batch.entries)
            _head_write(_batch.entries[-1])  # one signature per batch
    finally:
        _batch.entries, _batch.head = None, None


def anchor_create(*, seq: int, digest: str) -> JournalAnchor:
    """Sign (seq, hash): a chain rewritten later, however consistent, no longer matches it."""
    private = signing_key()
    fingerprint = auditchain.key_fingerprint(private.public_key())
    at = auditchain.iso(timezone.now())
    message = auditchain.anchor_message(seq=seq, hash=digest, at=at, key_fingerprint=fingerprint)
    anchor: JournalAnchor
    anchor, _ = JournalAnchor.objects.get_or_create(
        seq=seq,
        defaults={
            "hash": digest,
            "at": datetime.fromisoformat(at),
            "key_fingerprint": fingerprint,
            "signature": auditchain.sign(private, message),
        },
    )
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
