"""The signed archive a third party verifies offline (docs/audit.md)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from django.db.models import QuerySet

from audit import chain as auditchain
from audit.keys import signing_key
from audit.reports import anchor_of, audit_report, entries_between, entry_body, report_html
from audit.services import anchor_head
from updates.models import JournalAnchor, JournalEntry


def audit_export(*, since: datetime | None, until: datetime | None, path: Path) -> dict[str, object]:
    """Write the signed archive a third party verifies offline (docs/audit.md).

    The entries of [since, until), continued to the next signed anchor so the slice's last entry
    is vouched for (the head is signed now if no anchor covers it yet).
    """
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
