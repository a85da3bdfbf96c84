"""Reads of bundles and the artifacts they hold (issue #5), and a plan as the bundle page shows it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

from django.db.models import Prefetch, QuerySet

from updates.actors import Actor
from updates.engine.text import safe_json, safe_text
from updates.models import Bundle, BundleArtifact
from updates.selectors.actors import _actor
from updates.selectors.prepared import prepared


class BundleArtifactReport(TypedDict):
    member: str
    name: str
    sha256: str  # the store file's: for a delta's artifact, the delta's
    size: int
    full_sha256: str  # the artifact a stored delta rebuilds ("" when the store holds it whole)
    device_types: list[str]
    signed: bool
    signer_fingerprint: str
    component_types: list[str]


class BundleReport(TypedDict):
    """A bundle as `bundle show --json` prints it."""

    id: int
    status: str
    form: str
    filename: str
    sha256: str
    size: int
    manifest: str
    manifest_member: str
    directory: str
    actor_label: str
    created_at: datetime
    checks: list[dict[str, Any]]
    problems: list[str]
    artifacts: list[BundleArtifactReport]


class BundleSummary(BundleReport):
    """The report with who added or deleted it (the API's `BundleOut`, the bundle page)."""

    actor: dict[str, str]  # kind, name, label (`_actor`)
    deleted_at: datetime | None
    deleted_by: str


class BundleRow(TypedDict):
    """A row of the Bundles page: what it shows of a bundle, nothing more."""

    id: int
    status: str
    filename: str
    size: int
    manifest: str
    problems: list[str]
    created_at: datetime
    actor_label: str


class PlanOverview(TypedDict):
    groups: list[dict[str, Any]]
    changes: list[str]
    reboots: list[str]
    no_rollback: list[str]


def bundle_list(*, limit: int = 50) -> QuerySet[Bundle]:
    return Bundle.objects.order_by("-id")[:limit]


def bundle_rows(*, limit: int = 50) -> list[BundleRow]:
    """The newest bundles as the Bundles page lists them: the shown columns as plain tuples, no
    model instances, and none of the texts it does not show (manifest, topology, checks). Names
    are made safe text as `Bundle.from_db` makes them (a row may predate issue 22)."""
    found = prepared(  # compiled once per limit: the page asks the same every time
        f"bundles.rows.{limit}",
        lambda: Bundle.objects.order_by("-id").values_list(
            "id", "status", "filename", "size", "manifest_name", "problems", "created_at", "actor"
        )[:limit],
    )
    return [
        {
            "id": pk,
            "status": status,
            "filename": safe_text(filename),
            "size": size,
            "manifest": manifest,
            "problems": safe_json(problems),
            "created_at": created_at,
            "actor_label": Actor.from_json(actor).label,
        }
        for pk, status, filename, size, manifest, problems, created_at, actor in found
    ]


def bundle_get(*, bundle_id: int) -> Bundle | None:
    return Bundle.objects.filter(pk=bundle_id).first()


def bundle_page(*, page: int, page_size: int) -> tuple[list[Bundle], int]:
    rows = Bundle.objects.order_by("-id").prefetch_related(
        Prefetch("artifacts", queryset=BundleArtifact.objects.select_related("artifact").order_by("id"))
    )
    start = (page - 1) * page_size
    return list(rows[start : start + page_size]), Bundle.objects.count()


def bundle_artifacts(bundle: Bundle) -> QuerySet[BundleArtifact]:
    # `.all()` uses what a list prefetched (bundle_page); ordered and joined either way.
    if "artifacts" in getattr(bundle, "_prefetched_objects_cache", {}):
        return bundle.artifacts.all()
    return bundle.artifacts.select_related("artifact").order_by("id")


def bundle_report(bundle: Bundle) -> BundleReport:
    return {
        "id": bundle.pk,
        "status": bundle.status,
        "form": bundle.form,
        "filename": bundle.filename,
        "sha256": bundle.sha256,
        "size": bundle.size,
        "manifest": bundle.manifest_name,
        "manifest_member": bundle.manifest_member,
        "directory": bundle.directory,
        "actor_label": bundle.who.label,
        "created_at": bundle.created_at,
        "checks": bundle.checks,
        "problems": bundle.problems,
        "artifacts": [
            {
                "member": ba.member,
                "name": ba.artifact.name,
                "sha256": ba.artifact.sha256,
                "size": ba.artifact.size,
                "full_sha256": ba.artifact.full_sha256,  # a delta's artifact (docs/bytes.md)
                "device_types": ba.artifact.device_types,
                "signed": ba.artifact.signed,
                "signer_fingerprint": ba.artifact.signer_fingerprint,
                "component_types": ba.component_types,
            }
            for ba in bundle_artifacts(bundle)
        ],
    }


def bundle_summary(bundle: Bundle) -> BundleSummary:
    """`bundle_report` plus who added or deleted it; uses prefetched artifacts when present."""
    return {
        **bundle_report(bundle),
        "actor": _actor(bundle),
        "deleted_at": bundle.deleted_at,
        "deleted_by": bundle.deleted_by_actor.label if bundle.deleted_by_actor else "",
    }


def plan_overview(plan: dict[str, Any]) -> PlanOverview:
    """A plan (`plan --json` shape, with the dry run's answers) for the bundle page: its order
    groups of components, and which components change, reboot and cannot roll back."""
    components = {c["key"]: c for c in plan.get("components", [])}
    installing = [c for c in components.values() if c["action"] == "install"]
    return {
        "groups": [
            {"order": o, "components": [components[k] for k in keys]} for o, keys in plan.get("groups", [])
        ],
        "changes": [c["key"] for c in installing],
        "reboots": [c["key"] for c in installing if c.get("reboot", "No") != "No"],
        "no_rollback": [c["key"] for c in installing if c.get("rollback") != "Yes"],
    }
