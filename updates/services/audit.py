"""Writes of the audit journal: append an entry, sign the head, prune old step output.

`journal_append` is the one way anything gets into the journal; callers call it inside the
transaction of the change it records, so the change and its entry commit (or vanish) together.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from updates.actors import Actor
from updates.engine import auditchain
from updates.engine.fsutil import private_dir_mode, private_file_mode
from updates.models import JournalAnchor, JournalEntry, JournalHead, Step

KEY_NAME = "journal-signing-key.pem"
# Entries that close a deployment: the head is signed right after each (issue 11, "anchors").
DEPLOYMENT_ENDS = ("deployment.finished",)


def journal_append(
    *, kind: str, actor: Actor | None, subject: str = "", data: dict[str, object] | None = None
) -> JournalEntry:
    """Append one entry after the current head (and sign the head when an anchor is due).

    Appends are serialised by the head row: PostgreSQL locks it (SELECT … FOR UPDATE) until the
    caller's transaction ends; on SQLite the IMMEDIATE transaction already holds the database's
    write lock. The unique `prev_hash` refuses a second entry after the same head regardless.
    """
    if _batch.entries is not None:
        return _append(kind, actor, subject, data or {})
    with transaction.atomic():
        entry = _append(kind, actor, subject, data or {})
        entry.save(force_insert=True)
        JournalHead.objects.filter(pk=1).update(seq=entry.seq, hash=entry.hash)
    return entry


def _append(kind: str, actor: Actor | None, subject: str, data: dict[str, object]) -> JournalEntry:
    """The next entry (unsaved), after the locked head; signs the head when an anchor is due."""
    seq, prev = _batch.head or _head_locked()
    at = timezone.now()
    actor_json = actor.as_json() if actor else None
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
            seq, digest = _batch.head or (0, "")
            JournalHead.objects.filter(pk=1).update(seq=seq, hash=digest)
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
    return anchor


def anchor_head() -> JournalAnchor | None:
    """Sign the current head unless it is signed already (an export must end on an anchor)."""
    with transaction.atomic():
        seq, digest = _head_locked()
        if seq == 0:
            return None
        existing = JournalAnchor.objects.filter(seq=seq).first()
        return existing or anchor_create(seq=seq, digest=digest)


def key_path() -> Path:
    return Path(settings.DATASTORE_DIR) / "audit" / KEY_NAME


@functools.cache
def _load_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def signing_key() -> Ed25519PrivateKey:
    """The appliance's Ed25519 key (0600 in the data store, 0640 in a shared one), created on first use.

    Created beside its final name and hard-linked into place: two processes creating it at once
    both end up with the one that won, never with a half-written file.
    """
    path = key_path()
    if not path.exists():
        _key_create(path)
    return _load_key(path)


def _key_create(path: Path) -> None:
    path.parent.mkdir(mode=private_dir_mode(path.parent.parent), parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    # 0640 in the shared data store of a production install: the web server (the service user)
    # signs journal anchors with the key the root worker may have created (fsutil.group_shared).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, private_file_mode(path.parent))
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process won the race: use its key
    finally:
        tmp.unlink()


# ----- retention --------------------------------------------------------------------------------


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


# ----- export -----------------------------------------------------------------------------------


def audit_export(*, since: datetime | None, until: datetime | None, path: Path) -> dict[str, object]:
    """Write the signed archive a third party verifies offline (docs/audit.md).

    The entries of [since, until), continued to the next signed anchor so the slice's last entry
    is vouched for (the head is signed now if no anchor covers it yet).
    """
    from updates.audit import anchor_of, audit_report, entries_between, report_html

    anchor_head()
    selected = entries_between(since, until)
    first, last = selected.first(), selected.last()
    entries = JournalEntry.objects.none()
    anchors = JournalAnchor.objects.none()
    if first is not None and last is not None:
        closing = JournalAnchor.objects.filter(seq__gte=last.seq).order_by("seq").first()
        end = closing.seq if closing else last.seq
        entries = JournalEntry.objects.filter(seq__gte=first.seq, seq__lte=end).order_by("seq")
        anchors = JournalAnchor.objects.filter(seq__gte=first.seq, seq__lte=end).order_by("seq")
    report = audit_report(since=since, until=until)
    members = _export_members(entries, [anchor_of(a) for a in anchors], report_html(report))
    auditchain.archive_write(path, members, signing_key())
    return {"path": str(path), "entries": entries.count(), "anchors": anchors.count()}


def _export_members(
    entries: QuerySet[JournalEntry], anchors: list[auditchain.Anchor], html: str
) -> list[tuple[str, bytes]]:
    from updates.audit import entry_body

    lines = b"".join(auditchain.canonical(entry_body(e)) + b"\n" for e in entries.iterator(chunk_size=2000))
    members = [
        ("README.txt", EXPORT_README.encode()),
        ("public-key.pem", auditchain.public_pem(signing_key().public_key())),
        ("journal.jsonl", lines),
        ("anchors.jsonl", b"".join(auditchain.canonical(a.as_json()) + b"\n" for a in anchors)),
    ]
    for a in anchors:
        members += [
            (f"anchors/{a.seq}.json", a.message()),
            (f"anchors/{a.seq}.sig", bytes.fromhex(a.signature)),
        ]
    members.append(("report.html", html.encode()))
    return members


EXPORT_README = """Audit export of an update orchestrator appliance.

journal.jsonl   the journal entries, one per line, each line exactly the bytes its SHA-256 is
                taken of; every entry names the previous entry's SHA-256 in "prev"
anchors/N.json  the appliance's signed statement "entry N has hash H" (anchors/N.sig: Ed25519)
anchors.jsonl   the same anchors as JSON lines
public-key.pem  the appliance's Ed25519 public key: compare its fingerprint with the published one
report.html     the printable report of the deployments in the period
archive.sig     Ed25519 signature of every byte of this file before its last 2048 bytes

Verify with `orchestrator audit verify --export FILE`, or with sha256sum and openssl as
described in docs/audit.md ("Verifying an export offline").
"""
