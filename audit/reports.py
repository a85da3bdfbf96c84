"""Reads of the audit journal: verify the chain, and the report of past deployments.

The report is built from the journal entries (the record that is proven), not from the
deployment and step rows, which nothing protects; `audit verify` states whether it can be trusted.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.template.loader import render_to_string

from audit import chain as auditchain
from audit.keys import signing_key
from updates.actors import Actor
from updates.models import JournalAnchor, JournalEntry, JournalHead

# Who asked for what after the start: a takeover by the CLI or a worker, and requests over the API.
REQUEST_KINDS = (
    "deployment.resume_requested",
    "deployment.rollback_requested",
    "deployment.resumed",
    "deployment.rollback",
)


def entry_body(entry: JournalEntry) -> dict[str, object]:
    return auditchain.entry_body(
        seq=entry.seq,
        prev=entry.prev_hash,
        at=entry.at,
        kind=entry.kind,
        actor=entry.actor,
        subject=entry.subject,
        data=entry.data,
    )


def anchor_of(row: JournalAnchor) -> auditchain.Anchor:
    return auditchain.Anchor(
        seq=row.seq,
        hash=row.hash,
        at=auditchain.iso(row.at),
        key_fingerprint=row.key_fingerprint,
        signature=row.signature,
    )


def audit_verify(
    *, public_key: auditchain.Ed25519PublicKey | None = None, published: Iterable[auditchain.Anchor] = ()
) -> auditchain.Verdict:
    """Check every entry, the head and every signed anchor; the first break is named.

    `published`: anchors kept outside the appliance (an earlier export's anchors.jsonl); they win
    over the database's own, which whoever rewrote the chain could have rewritten too.
    """
    key = public_key or signing_key().public_key()
    anchors = {a.seq: anchor_of(a) for a in JournalAnchor.objects.all()}
    anchors.update((a.seq, a) for a in published)
    checker = auditchain.ChainChecker(anchors=anchors, public_key=key)
    for entry in JournalEntry.objects.order_by("seq").iterator(chunk_size=2000):
        if not checker.feed(entry_body(entry), entry.hash):
            break
    head = JournalHead.objects.filter(pk=1).first()
    if head is None:
        return _head_missing(checker)
    return checker.finish(head_seq=head.seq, head_hash=head.hash)


def _head_missing(checker: auditchain.ChainChecker) -> auditchain.Verdict:
    verdict = checker.finish()
    if verdict.broken is None:
        verdict.broken = auditchain.Break(verdict.head_seq, "", "", "the journal's head row was removed")
    return verdict


# ----- the report ---------------------------------------------------------------------------------


def entries_between(since: datetime | None, until: datetime | None) -> QuerySet[JournalEntry]:
    entries = JournalEntry.objects.order_by("seq")
    if since is not None:
        entries = entries.filter(at__gte=since)
    if until is not None:
        entries = entries.filter(at__lt=until)
    return entries


def audit_report(*, since: datetime | None, until: datetime | None) -> dict[str, Any]:
    """One section per deployment created in [since, until): who, what from → to, every step."""
    created = entries_between(since, until).filter(kind="deployment.created")
    subjects = [e.subject for e in created]
    entries = JournalEntry.objects.filter(subject__in=subjects).order_by("seq")
    by_subject: dict[str, list[JournalEntry]] = {s: [] for s in subjects}
    for entry in entries:
        by_subject[entry.subject].append(entry)
    return {
        "since": auditchain.iso(since) if since else None,
        "until": auditchain.iso(until) if until else None,
        "journal": audit_verify().as_json(),
        "deployments": [_section(rows) for rows in by_subject.values()],
    }


def _section(entries: list[JournalEntry]) -> dict[str, Any]:
    first = entries[0]
    created: dict[str, Any] = first.data
    planned: dict[str, Any] = next(
        (e.data for e in entries if e.kind == "deployment.planned"), {"components": []}
    )
    ended = next(
        (e for e in reversed(entries) if e.kind in ("deployment.finished", "deployment.paused")), None
    )
    status = str(ended.data.get("status")) if ended else "in progress"
    return {
        "id": int(first.subject.split(":")[1]),
        "created_at": auditchain.iso(first.at),
        "ended_at": auditchain.iso(ended.at) if ended and ended.kind == "deployment.finished" else None,
        "actor": first.actor,
        "kind": created.get("kind"),
        "manifest_from": created.get("from"),
        "manifest_to": created.get("manifest"),
        "bundle": created.get("bundle"),
        "components": [_versions(c, status) for c in planned.get("components", [])],
        "requests": [
            {"kind": e.kind.split(".", 1)[1], "at": auditchain.iso(e.at), "actor": e.actor, "data": e.data}
            for e in entries
            if e.kind in REQUEST_KINDS
        ],
        # In the order the calls started (the journal has them in the order they ended).
        "steps": sorted(
            ({"seq": e.seq, **e.data} for e in entries if e.kind == "step.finished"), key=lambda s: s["step"]
        ),
        "outcome": {"status": status, "reason": ended.data.get("reason", "") if ended else ""},
        "entries": [entries[0].seq, entries[-1].seq],
    }


def _versions(component: dict[str, Any], status: str) -> dict[str, Any]:
    """Before is what inspection found; after follows from the outcome (installed, or rolled
    back to before); an inconsistent system is marked so rather than guessed."""
    after = {"succeeded": component["target"], "rolled_back": component["current"]}.get(status, "?")
    if component["action"] != "install":
        after = component["current"]  # not touched by this deployment
    return {**component, "before": component["current"], "after": after}


CSV_COLUMNS = (
    "deployment",
    "created_at",
    "actor",
    "manifest_from",
    "manifest_to",
    "bundle_sha256",
    "outcome",
    "component",
    "state",
    "exit_code",
    "duration_ms",
    "started_at",
    "error",
    "stdout_sha256",
)


def report_csv(report: dict[str, Any]) -> str:
    """One row per step (a deployment without steps still gets one row)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in _csv_rows(report):
        writer.writerow(row)
    return out.getvalue()


def _csv_rows(report: dict[str, Any]) -> Iterator[dict[str, object]]:
    for d in report["deployments"]:
        common = {
            "deployment": d["id"],
            "created_at": d["created_at"],
            "actor": actor_text(d["actor"]),
            "manifest_from": (d["manifest_from"] or {}).get("name", ""),
            "manifest_to": d["manifest_to"]["name"],
            "bundle_sha256": (d["bundle"] or {}).get("sha256", ""),
            "outcome": d["outcome"]["status"],
        }
        if not d["steps"]:
            yield common
        for s in d["steps"]:
            yield {**common, **{k: s.get(k, "") for k in CSV_COLUMNS[7:]}}


def actor_text(actor: dict[str, Any] | None) -> str:
    """A journal entry's actor as pages name it (`Actor.label`: one formatting of an actor)."""
    return Actor.from_json(actor).label


def report_html(report: dict[str, Any]) -> str:
    """The printable page (templates/audit/report.html); the UI's report page reuses the template."""
    for d in report["deployments"]:
        d["actor_text"] = actor_text(d["actor"])
        for r in d["requests"]:
            r["actor_text"] = actor_text(r["actor"])
    html: str = render_to_string("audit/report.html", {"report": report})
    return html
