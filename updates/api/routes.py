"""The updates router (`/api/v1/`): system, bundles, plan, deployments, events, audit.

Thin edge: each handler parses its input (the schemas), is guarded by its role (`auth=`), and
calls one service or selector. Domain errors become HTTP answers in one table
(`updates/api/errors.py`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypedDict, TypeVar

from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from ninja import File, Query, Router, Schema, Status
from ninja.files import UploadedFile
from pydantic import AfterValidator, Field

from accounts.auth import OPERATOR, VIEWER
from accounts.selectors import Principal
from audit import reports as journal
from updates import selectors, services
from updates.api import events
from updates.api.render import project, trusted_json
from updates.api.schemas import (
    AcceptedOut,
    AuditDeploymentOut,
    BundleOut,
    BundlePageOut,
    DecisionIn,
    DeploymentIn,
    DeploymentOut,
    DeploymentPageOut,
    Id,
    PlanIn,
    PlanOut,
    ResumeIn,
    StepLogOut,
    SystemOut,
)
from updates.models import Step
from updates.selectors import BundleSummary, DeploymentDetail
from updates.services import bundles, dispatch, plan_preview
from updates.services.gates import deployment_gate_decide

router = Router(tags=["updates"], auth=VIEWER)
PLAN_TEXT_PATH = Path("/request/manifest.yaml")  # names the YAML text of POST /plan in its errors


def _principal(request: HttpRequest) -> Principal:
    # ninja sets `auth` on the request to what the route's authenticator returned.
    principal: Principal = request.auth  # type: ignore[attr-defined]
    return principal


T = TypeVar("T")


def _moment(value: datetime) -> datetime:
    # Year 9999 overflows once shifted to UTC or by a day (a 500 before issue 22): a 422 instead.
    if not 1900 <= value.year <= 9998:
        raise ValueError("must lie between the years 1900 and 9998")
    return value


Moment = Annotated[datetime, AfterValidator(_moment)]  # a query's since/until


class PageAnswer(TypedDict, Generic[T]):
    """A page of items (the `Page` schemas)."""

    page: int
    page_size: int
    total: int
    items: list[T]


def _found(value: T | None, what: str) -> T:
    if value is None:
        raise Http404(f"{what} does not exist")
    return value


class PageIn(Schema):
    page: int = Field(default=1, ge=1, le=10**9)
    page_size: int = Field(default=50, ge=1, le=200)

    def answer(self, total: int, items: list[T]) -> PageAnswer[T]:
        return {"page": self.page, "page_size": self.page_size, "total": total, "items": items}


# ----- system --------------------------------------------------------------------------------------


@router.get("/system", response=SystemOut)
def system_get(request: HttpRequest) -> HttpResponse:
    return trusted_json(project(SystemOut, selectors.system_report()))


@router.post("/system/refresh", response={202: AcceptedOut}, auth=OPERATOR)
def system_refresh(request: HttpRequest) -> Status[dict[str, str]]:
    dispatch.components_refresh_start()
    return Status(202, {"detail": "a worker asks every component for its Provides and Inventory"})


@router.post("/system/reconcile", response={202: DeploymentOut}, auth=OPERATOR)
def system_reconcile(request: HttpRequest) -> Status[DeploymentDetail]:
    """Install the active manifest again on a worker: only drifted components change (docs/policy.md)."""
    deployment = dispatch.deployment_start_reconcile(actor=_principal(request).actor)
    return Status(202, selectors.deployment_detail(deployment))


# ----- bundles -------------------------------------------------------------------------------------


@router.post("/bundles", response={200: BundleOut, 201: BundleOut, 422: BundleOut}, auth=OPERATOR)
def bundle_upload(request: HttpRequest, file: File[UploadedFile]) -> Status[BundleSummary]:
    """Multipart field `file`; written to disk in chunks while it arrives, then ingested (a delta
    bundle's bases are checked first: docs/bytes.md). 201: a new accepted bundle; 200: these bytes are an
    accepted bundle already, which is the answer (nothing added); 422: rejected, with every reason."""
    added = bundles.bundle_add_upload(upload=file, actor=_principal(request).actor)
    bundle = added.bundle
    status = 200 if added.existing else 201 if bundle.status == "accepted" else 422
    return Status(status, selectors.bundle_summary(bundle))


@router.get("/bundles", response=BundlePageOut)
def bundle_list(request: HttpRequest, paging: Query[PageIn]) -> PageAnswer[BundleSummary]:
    rows, total = selectors.bundle_page(page=paging.page, page_size=paging.page_size)
    return paging.answer(total, [selectors.bundle_summary(b) for b in rows])


@router.get("/bundles/{bundle_id}", response=BundleOut)
def bundle_get(request: HttpRequest, bundle_id: Id) -> BundleSummary:
    return selectors.bundle_summary(_found(selectors.bundle_get(bundle_id=bundle_id), f"bundle {bundle_id}"))


@router.delete("/bundles/{bundle_id}", response=BundleOut, auth=OPERATOR)
def bundle_delete(request: HttpRequest, bundle_id: Id) -> BundleSummary:
    try:
        bundle = bundles.bundle_delete(bundle_id=bundle_id, actor=_principal(request).actor)
    except bundles.BundleNotFound as exc:
        raise Http404(str(exc)) from None
    return selectors.bundle_summary(bundle)


# ----- plan and deployments ------------------------------------------------------------------------


@router.post("/plan", response=PlanOut, auth=OPERATOR)
def plan(request: HttpRequest, body: PlanIn) -> dict[str, Any]:
    """The dry run `plan --json` prints: a stored bundle's manifest, or a manifest as YAML text."""
    if body.bundle_id is not None:
        return plan_preview(manifest_path=bundles.bundle_manifest_path(bundle_id=body.bundle_id))
    return plan_preview(
        manifest_path=PLAN_TEXT_PATH, manifest_data=(body.manifest or "").encode(), confined=True
    )


@router.post("/deployments", response={202: DeploymentOut}, auth=OPERATOR)
def deployment_create(request: HttpRequest, body: DeploymentIn) -> Status[DeploymentDetail]:
    actor = _principal(request).actor
    if body.previous:
        deployment = dispatch.deployment_start_previous(
            actor=actor, stop_before=body.stop_before, force=body.force, force_reason=body.reason
        )
    else:
        deployment = dispatch.deployment_start_bundle(
            bundle_id=body.bundle_id or 0,
            actor=actor,
            stop_before=body.stop_before,
            force=body.force,
            force_reason=body.reason,
        )
    return Status(202, selectors.deployment_detail(deployment))


class DeploymentFilterIn(PageIn):
    status: str | None = None
    since: Moment | None = None
    until: Moment | None = None
    manifest: str | None = None
    # Keyset: the page after the deployment with this id (the last `items[].id` received); `page`
    # is then not used. Deep in a long history this costs what the first page costs.
    after: Id | None = None


@router.get("/deployments", response=DeploymentPageOut)
def deployment_list(request: HttpRequest, query: Query[DeploymentFilterIn]) -> HttpResponse:
    filters = selectors.DeploymentFilter(
        status=query.status, since=query.since, until=query.until, manifest=query.manifest
    )
    rows, total = selectors.deployment_page(
        filters=filters, page=query.page, page_size=query.page_size, after=query.after
    )
    return trusted_json(project(DeploymentPageOut, query.answer(total, rows)))


@router.get("/deployments/{deployment_id}", response=DeploymentOut)
def deployment_get(request: HttpRequest, deployment_id: Id) -> HttpResponse:
    deployment = _found(selectors.deployment_find(deployment_id=deployment_id), f"deployment {deployment_id}")
    return trusted_json(project(DeploymentOut, selectors.deployment_detail(deployment)))


@router.get("/deployments/{deployment_id}/steps/{step_id}/log", response=StepLogOut)
def step_log(request: HttpRequest, deployment_id: Id, step_id: Id) -> Step:
    return _found(selectors.step_get(deployment_id=deployment_id, step_id=step_id), f"step {step_id}")


@router.post("/deployments/{deployment_id}/resume", response={202: DeploymentOut}, auth=OPERATOR)
def deployment_resume(request: HttpRequest, deployment_id: Id, body: ResumeIn) -> Status[DeploymentDetail]:
    deployment = dispatch.deployment_resume_start(
        deployment_id=deployment_id, stop_before=body.stop_before, actor=_principal(request).actor
    )
    return Status(202, selectors.deployment_detail(deployment))


@router.post("/deployments/{deployment_id}/rollback", response={202: DeploymentOut}, auth=OPERATOR)
def deployment_rollback(request: HttpRequest, deployment_id: Id) -> Status[DeploymentDetail]:
    deployment = dispatch.deployment_rollback_start(
        deployment_id=deployment_id, actor=_principal(request).actor
    )
    return Status(202, selectors.deployment_detail(deployment))


@router.post("/deployments/{deployment_id}/cancel", response=DeploymentOut, auth=OPERATOR)
def deployment_cancel(request: HttpRequest, deployment_id: Id) -> DeploymentDetail:
    """A queued deployment no runner has taken yet ends `rejected`, cancelled by the caller;
    409 `not_queued` once a runner has it (roll it back instead)."""
    deployment = services.deployment_cancel(deployment_id=deployment_id, actor=_principal(request).actor)
    return selectors.deployment_detail(deployment)


@router.post("/deployments/{deployment_id}/approve", response=DeploymentOut, auth=OPERATOR)
def deployment_approve(request: HttpRequest, deployment_id: Id, body: DecisionIn) -> DeploymentDetail:
    """Approve the gate it waits at (docs/policy.md): the run goes on."""
    deployment = deployment_gate_decide(
        deployment_id=deployment_id, approve=True, actor=_principal(request).actor, reason=body.reason
    )
    return selectors.deployment_detail(deployment)


@router.post("/deployments/{deployment_id}/reject", response=DeploymentOut, auth=OPERATOR)
def deployment_reject(request: HttpRequest, deployment_id: Id, body: DecisionIn) -> DeploymentDetail:
    """Reject the gate it waits at (docs/policy.md): the system is rolled back."""
    deployment = deployment_gate_decide(
        deployment_id=deployment_id, approve=False, actor=_principal(request).actor, reason=body.reason
    )
    return selectors.deployment_detail(deployment)


@router.get(
    "/deployments/{deployment_id}/events",
    response={200: None},
    openapi_extra={"responses": {200: {"description": "text/event-stream: one event per step change"}}},
)
def deployment_events(request: HttpRequest, deployment_id: Id) -> StreamingHttpResponse:
    """Server-sent events: `step` (id = the change's sequence number) until the deployment ends,
    then `end`. Reconnecting with `Last-Event-ID` resumes after that change, without gaps."""
    _found(selectors.deployment_status(deployment_id=deployment_id), f"deployment {deployment_id}")
    after = _last_event_id(request)
    release = events.stream_slot(_principal(request).user.username)
    # Under ASGI (bin/run, the web unit) a coroutine; under WSGI (the test client) a generator.
    stream = events.event_stream_async if isinstance(request, ASGIRequest) else events.event_stream
    return events.EventStreamResponse(
        stream(deployment_id=deployment_id, after=after, release=release), release
    )


def _last_event_id(request: HttpRequest) -> int:
    value = request.headers.get("Last-Event-ID", "") or request.GET.get("last_event_id", "")
    return int(value) if value.isdigit() else 0


# ----- audit ---------------------------------------------------------------------------------------


class AuditIn(Schema):
    since: Moment | None = None
    until: Moment | None = None
    format: Literal["json", "csv", "steps-csv"] = "json"


class AuditVerifyOut(Schema):
    """The journal's state (docs/audit.md): `broken` names the first broken entry."""

    ok: bool
    summary: str
    entries: int
    first: int | None
    head: dict[str, Any]
    anchors: int
    last_anchor: int | None
    broken: dict[str, Any] | None


@router.get("/audit/verify", response=AuditVerifyOut)
def audit_verify(request: HttpRequest) -> Any:
    return journal.audit_verify().as_json()


@router.get("/audit", response=list[AuditDeploymentOut])
def audit(request: HttpRequest, query: Query[AuditIn]) -> Any:
    """The journal's record of each deployment (docs/audit.md): JSON, or the audit CSV (one row
    per deployment and component; `steps-csv`: one row per step)."""
    report = journal.audit_report(since=query.since, until=query.until, verify=False)
    if query.format == "json":
        return report["deployments"]
    response = HttpResponse(
        journal.report_csv(report, steps=query.format == "steps-csv"), content_type="text/csv; charset=utf-8"
    )
    name = "audit-steps.csv" if query.format == "steps-csv" else "audit.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
