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
from updates.models import Deployment, JournalAnchor, JournalEntry, JournalHead, Step

# Who asked for what after the start: a takeover by the CLI or a worker, and requests over the API.
REQUEST_KINDS = (
    "deployment.resume_requested",
    "deployment.rollback_requested",
    "deployment.resumed",
    "deployment.rollback",
    # docs/policy.md: a wait at an approval gate, a person's decision, the run going on.
    "deployment.waiting",
    "gate.approved",
    "gate.rejected",
    "deployment.continued",
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
    """Check every entry, the signed head, every signed anchor, then every deployment and step row
    against the entry that sealed it; the first break is named.

    `published`: anchors kept outside the appliance (an earlier export's anchors.jsonl, or the
    `orchestrator.audit` log lines); they win over the database's own, which whoever rewrote the
    chain could have rewritten too.
    """
    key = public_key or signing_key().public_key()
    anchors = {a.seq: anchor_of(a) for a in JournalAnchor.objects.all()}
    anchors.update((a.seq, a) for a in published)
    checker = auditchain.ChainChecker(anchors=anchors, public_key=key)
    seen = _Seen()
    for entry in JournalEntry.objects.order_by("seq").iterator(chunk_size=2000):
        if not checker.feed(entry_body(entry), entry.hash):
            break
        seen.note(entry)
    head = JournalHead.objects.filter(pk=1).first()
    if head is None:
        return _head_missing(checker)
    verdict = checker.finish(
        head=auditchain.SignedHead(
            seq=head.seq,
            hash=head.hash,
            at=head.at,
            key_fingerprint=head.key_fingerprint,
            signature=head.signature,
        )
    )
    if verdict.ok:  # the entries hold: the rows people read must say what they recorded
        verdict.broken = _deployment_rows_break(seen) or _step_rows_break(seen)
    return verdict


def _head_missing(checker: auditchain.ChainChecker) -> auditchain.Verdict:
    verdict = checker.finish()
    if verdict.broken is None:
        verdict.broken = auditchain.Break(verdict.head_seq, "", "", "the journal's head row was removed")
    return verdict


class _Seen:
    """What the row checks need from the pass over the entries: the pruned steps and the first
    deployment the journal records (rows older than the journal carry no seal)."""

    def __init__(self) -> None:
        self.pruned: list[list[int]] = []
        self.first_deployment: int | None = None

    def note(self, entry: JournalEntry) -> None:
        if entry.kind == "audit.pruned":
            self.pruned += entry.data.get("step_ids", [])
        elif entry.kind == "deployment.created" and self.first_deployment is None:
            self.first_deployment = int(entry.subject.split(":")[1])

    def before_journal(self, deployment_id: int) -> bool:
        return self.first_deployment is None or deployment_id < self.first_deployment


CHUNK = 2000
DEPLOYMENT_FIELDS = (
    "id",
    "status",
    "reason",
    "components",
    "manifest_id",
    "kind",
    "actor",
    "forced_reason",
    "seal",
)
# What verify reads of a step: the fields its entry records (`chain.STEP_FIELDS`), the output
# it records the digests of, and where the row belongs.
STEP_FIELDS = ("id", "deployment_id", *auditchain.STEP_FIELDS, "stdout", "stderr", "seal")


def _chunks(rows: QuerySet[Any, dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The rows in id order, CHUNK at a time (keyset pages: never the whole table in memory)."""
    last = 0
    while chunk := list(rows.filter(pk__gt=last).order_by("pk")[:CHUNK]):
        yield chunk
        last = chunk[-1]["id"]


def _sealing(chunk: list[dict[str, Any]]) -> dict[str, JournalEntry]:
    seals = {r["seal"] for r in chunk if r["seal"]}
    return {e.hash: e for e in JournalEntry.objects.filter(hash__in=seals)}


def _row_break(entry: JournalEntry | None, row: str, problem: str) -> auditchain.Break:
    if entry is None:
        return auditchain.Break(seq=0, at="", what="", problem=problem, row=row)
    body = entry_body(entry)
    return auditchain.Break(
        seq=entry.seq, at=auditchain.iso(entry.at), what=auditchain.describe(body), problem=problem, row=row
    )


def _deployment_rows_break(seen: _Seen) -> auditchain.Break | None:
    for chunk in _chunks(Deployment.objects.values(*DEPLOYMENT_FIELDS)):
        sealing = _sealing(chunk)
        created = {
            e.subject: e
            for e in JournalEntry.objects.filter(
                kind="deployment.created", subject__in=[f"deployment:{r['id']}" for r in chunk]
            )
        }
        for row in chunk:
            label = f"deployment {row['id']}"
            if not row["seal"]:
                if seen.before_journal(row["id"]):
                    continue  # recorded before the journal existed (docs/audit.md)
                return _row_break(
                    None, label, "no journal entry seals it (its seal was removed, or it was added)"
                )
            entry = sealing.get(row["seal"])
            if entry is None:
                return _row_break(None, label, f"its seal {row['seal'][:16]}… names no journal entry")
            first = created.get(f"deployment:{row['id']}")
            problem = auditchain.deployment_row_problem(
                row, entry_body(entry), entry_body(first) if first else None
            )
            if problem:
                return _row_break(entry, label, problem)
    return None


def _step_rows_break(seen: _Seen) -> auditchain.Break | None:
    for chunk in _chunks(Step.objects.values(*STEP_FIELDS)):
        sealing = _sealing(chunk)
        for row in chunk:
            label = f"step {row['id']} (deployment {row['deployment_id']}, {row['component']} {row['state']})"
            row["started_at"] = auditchain.iso(row["started_at"])
            row["ended_at"] = auditchain.iso(row["ended_at"]) if row["ended_at"] else None
            if not row["seal"]:
                problem = (
                    None
                    if seen.before_journal(row["deployment_id"])
                    else auditchain.step_unsealed_problem(row)
                )
                if problem:
                    return _row_break(None, label, problem)
                continue
            entry = sealing.get(row["seal"])
            if entry is None:
                return _row_break(None, label, f"its seal {row['seal'][:16]}… names no journal entry")
            pruned = auditchain.in_ranges(row["id"], seen.pruned)
            problem = auditchain.step_row_problem(row, entry_body(entry), pruned=pruned)
            if problem:
                return _row_break(entry, label, problem)
    return None


# ----- the report: the one read model of the audit (API, UI, CLI report and export) -----------------


def entries_between(since: datetime | None, until: datetime | None) -> QuerySet[JournalEntry]:
    entries = JournalEntry.objects.order_by("seq")
    if since is not None:
        entries = entries.filter(at__gte=since)
    if until is not None:
        entries = entries.filter(at__lt=until)
    return entries


def audit_report(
    *, since: datetime | None, until: datetime | None, verify: bool = True, newest: int | None = None
) -> dict[str, Any]:
    """One section per deployment created in [since, until): who, what from → to, the bundle and
    its signers, every component's version before and after, every step, the outcome.

    `verify`: head it with the chain's verification (reads every entry: the UI asks for it on
    request only). `newest`: only the newest N deployments of the period (the page: years of
    history must not make it read the whole journal); `more` then says whether older ones were
    left out. The downloads and the command line take the whole period."""
    created = entries_between(since, until).filter(kind="deployment.created")
    if newest is None:
        subjects = [e.subject for e in created]
    else:
        latest = list(created.order_by("-seq").values_list("subject", flat=True)[: newest + 1])
        subjects = latest[:newest][::-1]
    by_subject: dict[str, list[JournalEntry]] = {s: [] for s in subjects}
    for entry in JournalEntry.objects.filter(subject__in=subjects).order_by("seq").iterator(chunk_size=2000):
        by_subject[entry.subject].append(entry)
    return {
        "since": auditchain.iso(since) if since else None,
        "until": auditchain.iso(until) if until else None,
        "journal": audit_verify().as_json() if verify else None,
        "deployments": [_section(rows) for rows in by_subject.values()],
        "more": newest is not None and len(latest) > newest,
        "drift": _drift(since, until),
    }


DRIFT_KINDS = ("component.drifted", "component.drift_ended")


def _drift(since: datetime | None, until: datetime | None) -> list[dict[str, Any]]:
    """When a component started or stopped differing from what the last deployment left on it
    (docs/policy.md), and who asked when it was noticed."""
    return [
        {
            "seq": e.seq,
            "at": auditchain.iso(e.at),
            "kind": e.kind.split(".", 1)[1],
            "actor_text": actor_text(e.actor),
            **e.data,
        }
        for e in entries_between(since, until).filter(kind__in=DRIFT_KINDS)
    ]


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
    versions = ended.data.get("versions") if ended else None
    bundle = created.get("bundle")
    if bundle:
        signers = {a.get("signer") for a in bundle.get("artifacts", []) if a.get("signed")}
        bundle = {**bundle, "signers": sorted(s for s in signers if s)}
    return {
        "id": int(first.subject.split(":")[1]),
        "created_at": auditchain.iso(first.at),
        "ended_at": auditchain.iso(ended.at) if ended and ended.kind == "deployment.finished" else None,
        "actor": first.actor,
        "actor_text": actor_text(first.actor),
        "kind": created.get("kind"),
        "manifest_from": created.get("from"),
        "manifest_to": created.get("manifest"),
        "bundle": bundle,
        "forced": created.get("forced"),
        "components": versions
        if versions is not None
        else [_versions(c, status) for c in planned["components"]],
        "requests": [
            {
                "kind": e.kind.split(".", 1)[1],
                "at": auditchain.iso(e.at),
                "actor": e.actor,
                "actor_text": actor_text(e.actor),
                "data": e.data,
            }
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
    """For entries journaled before the outcome carried the versions: before is what inspection
    found; after follows from the outcome (installed, or rolled back to before); anything else is
    "unknown" (the word `selectors.component_versions` uses) rather than guessed."""
    after = {"succeeded": component["target"], "rolled_back": component["current"]}.get(status, "unknown")
    if component["action"] != "install":
        after = component["current"]  # not touched by this deployment
    return {
        "key": component["key"],
        "action": component["action"],
        "before": component["current"],
        "target": component["target"],
        "after": after,
    }


# The CSV a spreadsheet opens: one row per deployment and component (a deployment without a plan
# gets one row), and the steps as a second table (`steps_csv`).
CSV_COLUMNS = (
    "deployment",
    "created_at",
    "ended_at",
    "actor",
    "manifest_from",
    "manifest_to",
    "manifest_sha256",
    "bundle_id",
    "bundle_sha256",
    "bundle_signers",
    "outcome",
    "reason",
    "forced_by",
    "forced_reason",
    "component",
    "action",
    "version_before",
    "version_after",
)
STEP_CSV_COLUMNS = (
    "deployment",
    "entry",
    "step",
    "component",
    "state",
    "started_at",
    "duration_ms",
    "exit_code",
    "timed_out",
    "answer",
    "error",
    "stdout_sha256",
    "stderr_sha256",
)


def report_csv(report: dict[str, Any], *, steps: bool = False) -> str:
    """The one CSV writer of the audit (API, UI download and `audit report --format csv`)."""
    out = io.StringIO()
    columns = STEP_CSV_COLUMNS if steps else CSV_COLUMNS
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(_step_rows(report) if steps else _csv_rows(report))
    return out.getvalue()


def _csv_rows(report: dict[str, Any]) -> Iterator[dict[str, object]]:
    for d in report["deployments"]:
        bundle, forced = d["bundle"] or {}, d["forced"] or {}
        common = {
            "deployment": d["id"],
            "created_at": d["created_at"],
            "ended_at": d["ended_at"] or "",
            "actor": d["actor_text"],
            "manifest_from": (d["manifest_from"] or {}).get("name", ""),
            "manifest_to": d["manifest_to"]["name"],
            "manifest_sha256": d["manifest_to"].get("sha256", ""),
            "bundle_id": bundle.get("id", ""),
            "bundle_sha256": bundle.get("sha256", ""),
            "bundle_signers": " ".join(bundle.get("signers", [])),
            "outcome": d["outcome"]["status"],
            "reason": d["outcome"]["reason"],
            "forced_by": forced.get("by", ""),
            "forced_reason": forced.get("reason", ""),
        }
        if not d["components"]:
            yield common
        for c in d["components"]:
            yield {
                **common,
                "component": c["key"],
                "action": c["action"],
                "version_before": c["before"],
                "version_after": c["after"],
            }


def _step_rows(report: dict[str, Any]) -> Iterator[dict[str, object]]:
    for d in report["deployments"]:
        for s in d["steps"]:
            yield {**s, "deployment": d["id"], "entry": s["seq"]}


def actor_text(actor: dict[str, Any] | None) -> str:
    """A journal entry's actor as pages name it (`Actor.label`: one formatting of an actor)."""
    return Actor.from_json(actor).label


def report_html(report: dict[str, Any]) -> str:
    """The printable page (templates/audit/report.html)."""
    html: str = render_to_string("audit/report.html", {"report": report})
    return html
