"""Web UI pages: thin edges that parse input, check the role and call one service or selector.

The REST API (issue #9) calls the same services and selectors; nothing is computed here but
what a page needs to draw it (chart geometry, CSV columns).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from updates import selectors
from updates.access import ROLES, role_required, user_create, user_list, user_role_set
from updates.engine.manifest import InputError
from updates.engine.planner import SelectionError
from updates.forms import DeployForm, HistoryFilterForm, PeriodForm, RoleForm, UploadForm, UserCreateForm
from updates.services import BusyError, NothingInProgress, plan_preview
from updates.services.bundles import BundleNotFound, bundle_add, bundle_manifest_path
from updates.services.dispatch import (
    components_refresh_start,
    deployment_rollback_start,
    deployment_resume_start,
    deployment_start,
)

PAGE_SIZE = 20


@require_GET
@role_required("viewer")
def system(request: HttpRequest) -> HttpResponse:
    return render(request, "updates/system.html", selectors.system_overview())


@require_POST
@role_required("operator")
def system_refresh(request: HttpRequest) -> HttpResponse:
    components_refresh_start()
    messages.info(request, "A worker is asking every component for its versions; refresh in a moment.")
    return redirect("system")


@require_GET
@role_required("viewer")
def bundle_list(request: HttpRequest) -> HttpResponse:
    return _bundles_page(request, UploadForm())


def _bundles_page(request: HttpRequest, form: UploadForm, status: int = 200) -> HttpResponse:
    context = {"bundles": selectors.bundle_list(), "form": form, "max_bytes": settings.BUNDLE_UPLOAD_MAX_BYTES}
    return render(request, "updates/bundles.html", context, status=status)


@require_POST
@role_required("operator")
def bundle_upload(request: HttpRequest) -> HttpResponse:
    """The upload form's target; the page's script posts here too (XHR, for the progress bar)
    and gets JSON back. Django's upload handler streams files over 2.5 MB to a temp file."""
    wants_json = "application/json" in request.headers.get("Accept", "")
    limit = settings.BUNDLE_UPLOAD_MAX_BYTES
    too_big = int(request.META.get("CONTENT_LENGTH") or 0) > limit
    # Too big: refused before Django reads the body (request.FILES is never touched).
    form = UploadForm.refused(f"The file is larger than the limit of {limit} bytes.") if too_big else UploadForm(files=request.FILES)
    if not form.is_valid():
        status = 413 if too_big else 400
        if wants_json:
            return JsonResponse({"errors": form.errors.get_json_data()}, status=status)
        return _bundles_page(request, form, status=status)
    upload = form.cleaned_data["file"]
    bundle = bundle_add(source=upload, filename=upload.name, size_hint=upload.size, created_by=request.user.get_username())
    if wants_json:
        return JsonResponse(
            {"id": bundle.pk, "status": bundle.status, "problems": bundle.problems, "url": f"/bundles/{bundle.pk}/"},
            status=201 if bundle.status == "accepted" else 422,
        )
    return redirect("bundle", bundle_id=bundle.pk)


@require_GET
@role_required("viewer")
def bundle_detail(request: HttpRequest, bundle_id: int) -> HttpResponse:
    bundle = selectors.bundle_get(bundle_id=bundle_id)
    if bundle is None:
        raise Http404(f"bundle {bundle_id} does not exist")
    context = {"bundle": bundle, "report": selectors.bundle_report(bundle), "form": DeployForm()}
    if bundle.status == bundle.Status.ACCEPTED:
        context.update(_plan(bundle_id))
    return render(request, "updates/bundle.html", context)


def _plan(bundle_id: int) -> dict[str, Any]:
    try:
        plan = plan_preview(manifest_path=bundle_manifest_path(bundle_id=bundle_id))
    except (BundleNotFound, InputError, SelectionError) as exc:
        return {"plan_error": str(exc)}
    return {"plan": plan, "plan_groups": selectors.plan_groups(plan)}


@require_POST
@role_required("operator")
def bundle_deploy(request: HttpRequest, bundle_id: int) -> HttpResponse:
    form = DeployForm(request.POST)
    if not form.is_valid():
        bundle = selectors.bundle_get(bundle_id=bundle_id)
        if bundle is None:
            raise Http404(f"bundle {bundle_id} does not exist")
        context = {"bundle": bundle, "report": selectors.bundle_report(bundle), "form": form, **_plan(bundle_id)}
        return render(request, "updates/bundle.html", context, status=400)
    try:
        path = bundle_manifest_path(bundle_id=bundle_id)
        deployment = deployment_start(manifest_path=path, created_by=request.user.get_username())
    except BusyError as exc:
        messages.error(request, f"Not started: {exc}")
        return redirect("bundle", bundle_id=bundle_id)
    except (BundleNotFound, InputError, SelectionError) as exc:
        messages.error(request, f"Not started: {exc}")
        return redirect("bundle", bundle_id=bundle_id)
    return redirect("deployment", deployment_id=deployment.pk)


@require_GET
@role_required("viewer")
def deployment_detail(request: HttpRequest, deployment_id: int) -> HttpResponse:
    deployment = _deployment_or_404(deployment_id)
    template = "updates/_timeline.html" if request.headers.get("HX-Request") else "updates/deployment.html"
    return render(request, template, _deployment_context(deployment))


def _deployment_context(deployment: Any) -> dict[str, Any]:
    in_progress = deployment.status in deployment.IN_PROGRESS
    return {
        "deployment": deployment,
        "lanes": selectors.deployment_timeline(deployment),
        "progress": selectors.deployment_progress(deployment),
        "in_progress": in_progress,
        # Resume / roll back apply to a run that waits for its operator or lost its runner.
        "can_continue": in_progress and deployment.status != deployment.Status.QUEUED,
    }


def _deployment_or_404(deployment_id: int) -> Any:
    deployment = selectors.deployment_get(deployment_id=deployment_id)
    if deployment is None:
        raise Http404(f"deployment {deployment_id} does not exist")
    return deployment


@require_GET
@role_required("viewer")
def step_detail(request: HttpRequest, deployment_id: int, step_id: int) -> HttpResponse:
    step = selectors.step_get(deployment_id=deployment_id, step_id=step_id)
    if step is None:
        raise Http404(f"deployment {deployment_id} has no step {step_id}")
    template = "updates/_step.html" if request.headers.get("HX-Request") else "updates/step.html"
    return render(request, template, {"step": selectors.step_summary(step), "deployment_id": deployment_id})


@require_POST
@role_required("operator")
def deployment_resume(request: HttpRequest, deployment_id: int) -> HttpResponse:
    return _continue(request, deployment_id, deployment_resume_start, "resume")


@require_POST
@role_required("operator")
def deployment_rollback(request: HttpRequest, deployment_id: int) -> HttpResponse:
    return _continue(request, deployment_id, deployment_rollback_start, "roll back")


def _continue(request: HttpRequest, deployment_id: int, start: Any, verb: str) -> HttpResponse:
    try:
        start(deployment_id=deployment_id)
    except (BusyError, NothingInProgress) as exc:
        messages.error(request, f"Cannot {verb}: {exc}")
    else:
        messages.info(request, f"A worker will {verb} deployment {deployment_id}.")
    return redirect("deployment", deployment_id=deployment_id)


@require_GET
@role_required("viewer")
def history(request: HttpRequest) -> HttpResponse:
    form = HistoryFilterForm(request.GET)
    filters = form.cleaned_data if form.is_valid() else {}
    page = Paginator(selectors.deployment_filter(**filters), PAGE_SIZE).get_page(request.GET.get("page"))
    weeks = selectors.deployments_per_week()
    context = {
        "form": form,
        "page": page,
        "rows": selectors.deployment_rows(list(page.object_list)),
        "chart": chart_geometry(weeks),
        "query": _query_without_page(request),
    }
    return render(request, "updates/history.html", context)


def _query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


CHART = {"width": 960, "height": 220, "left": 36, "bottom": 40, "top": 12}


def chart_geometry(weeks: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacked bars per week for the history's SVG chart (drawn by the template)."""
    top = max([w["total"] for w in weeks] + [1])
    inner_h = CHART["height"] - CHART["bottom"] - CHART["top"]
    slot = (CHART["width"] - CHART["left"]) / max(len(weeks), 1)
    bars = []
    for i, week in enumerate(weeks):
        y = CHART["height"] - CHART["bottom"]
        x = CHART["left"] + i * slot + slot * 0.15
        for outcome, n in week["counts"].items():
            h = inner_h * n / top
            if n:
                bars.append({"x": x, "y": y - h, "w": slot * 0.7, "h": h, "outcome": outcome, "n": n, "week": week["week"]})
            y -= h
    labels = [{"x": CHART["left"] + (i + 0.5) * slot, "week": w["week"]} for i, w in enumerate(weeks)]
    return {**CHART, "bars": bars, "labels": labels, "max": top, "outcomes": selectors.CHART_OUTCOMES, "weeks": weeks}


@require_GET
@role_required("viewer")
def audit(request: HttpRequest) -> HttpResponse:
    form = PeriodForm(request.GET)
    if not form.is_valid():
        return render(request, "updates/audit.html", {"form": form, "rows": []}, status=400)
    rows = selectors.audit_rows(**form.cleaned_data)
    fmt = request.GET.get("format", "")
    if fmt == "csv":
        return audit_csv(rows)
    if fmt == "json":
        body = json.dumps({"deployments": rows}, cls=DjangoJSONEncoder, indent=1)
        return _download(HttpResponse(body, content_type="application/json"), "audit.json")
    return render(request, "updates/audit.html", {"form": form, "rows": rows, "query": request.GET.urlencode()})


AUDIT_COLUMNS = ("id", "created_at", "created_by", "kind", "manifest_from", "manifest_to", "status", "started_at", "duration")


def audit_csv(rows: list[dict[str, Any]]) -> HttpResponse:
    response = _download(HttpResponse(content_type="text/csv; charset=utf-8"), "audit.csv")
    writer = csv.writer(response)
    writer.writerow([*AUDIT_COLUMNS, "versions", "steps", "reason"])
    for row in rows:
        versions = "; ".join(f"{v['component']}: {v['before']} -> {v['after']}" for v in row["versions"])
        writer.writerow([*(row[c] for c in AUDIT_COLUMNS), versions, len(row["steps"]), row["reason"]])
    return response


def _download(response: HttpResponse, name: str) -> HttpResponse:
    response["Content-Disposition"] = f'attachment; filename="{Path(name).name}"'
    return response


# ----- administration (admin role) ---------------------------------------------------------------


@require_GET
@role_required("admin")
def admin_home(request: HttpRequest) -> HttpResponse:
    return _admin_page(request, UserCreateForm())


def _admin_page(request: HttpRequest, form: UserCreateForm, status: int = 200) -> HttpResponse:
    context = {"users": user_list(), "form": form, "roles": ROLES, "keys": selectors.trusted_keys()}
    return render(request, "updates/admin.html", context, status=status)


@require_POST
@role_required("admin")
def admin_user_create(request: HttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST)
    if not form.is_valid():
        return _admin_page(request, form, status=400)
    user = user_create(**form.cleaned_data)
    messages.info(request, f"User {user.get_username()} created.")
    return redirect("admin-home")


@require_POST
@role_required("admin")
def admin_user_role(request: HttpRequest, user_id: int) -> HttpResponse:
    form = RoleForm(request.POST)
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        raise Http404(f"user {user_id} does not exist")
    if not form.is_valid():
        messages.error(request, f"Role not changed: {form.errors.as_text()}")
    elif user.pk == request.user.pk:
        messages.error(request, "You cannot change your own role (ask another admin).")
    else:
        user_role_set(user=user, role=form.cleaned_data["role"])
        messages.info(request, f"{user.get_username()} is now {form.cleaned_data['role']}.")
    return redirect("admin-home")
