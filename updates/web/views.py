"""Web UI pages: thin edges that parse input, check the role and call the services and selectors
the REST API calls (issue #9). Nothing is computed here but what a page needs to draw it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from accounts import selectors as accounts_selectors
from accounts import services as accounts_services
from accounts.models import Role
from audit.reports import audit_report, audit_verify, report_csv
from updates import selectors
from updates.api.uploads import UploadIncomplete, UploadTooLarge
from updates.engine.errors import BusyError, InvalidInput, OrchestratorError
from updates.models import Deployment
from updates.services import deployment_cancel as cancel_deployment
from updates.services import plan_preview
from updates.services.bundles import bundle_add_upload, bundle_manifest_path
from updates.services.dispatch import (
    components_refresh_start,
    deployment_resume_start,
    deployment_rollback_start,
    deployment_start_bundle,
    deployment_start_reconcile,
)
from updates.services.environment import store_relative
from updates.services.gates import deployment_gate_decide, deployment_policy
from updates.services.hook_secret import hook_secret_is_set, hook_secret_rotate
from updates.statuses import status_label
from updates.web import history as history_html
from updates.web.access import actor, role_required
from updates.web.forms import (
    DeployForm,
    HistoryFilterForm,
    PeriodForm,
    RoleForm,
    TokenCreateForm,
    UploadForm,
    UserCreateForm,
)
from updates.web.tables import bundle_rows_html, last_deployment_html, system_boxes_html

PAGE_SIZE = 20


@require_GET
@role_required(Role.VIEWER)
def system(request: HttpRequest) -> HttpResponse:
    page = selectors.system_page()
    # The boxes and the last deployment drawn in Python (updates/web/tables.py): their template
    # loops, links and date filters were most of the page's rendering.
    last = page["status"]["last"]
    return render(
        request,
        "updates/system.html",
        {
            **page,
            "boxes_html": system_boxes_html(page["boxes"]),
            "last_html": last_deployment_html(last) if last else "",
        },
    )


@require_POST
@role_required(Role.OPERATOR)
def system_refresh(request: HttpRequest) -> HttpResponse:
    components_refresh_start()
    if selectors.live_workers():
        messages.info(request, "A worker is asking every component for its versions; reload in a moment.")
    else:  # queued all the same: the first worker to start takes it
        messages.warning(request, "Refresh queued, but no worker is running: it waits until one starts.")
    return redirect("system")


def _no_worker() -> bool:
    """Whether work queued now would wait: no worker beat lately (`updates.liveness`)."""
    return not selectors.live_workers()


@require_POST
@role_required(Role.OPERATOR)
def system_reconcile(request: HttpRequest) -> HttpResponse:
    """Install the active manifest again on a worker: only drifted components change (docs/policy.md)."""
    try:
        deployment = deployment_start_reconcile(actor=actor(request))
    except OrchestratorError as exc:
        messages.error(request, store_relative(f"Cannot reconcile: {exc}"))
        return redirect("system")
    return redirect("deployment", deployment_id=deployment.pk)


# ----- bundles -------------------------------------------------------------------------------------


@require_GET
@role_required(Role.VIEWER)
def bundle_list(request: HttpRequest) -> HttpResponse:
    return _bundles_page(request, UploadForm())


def _bundles_page(request: HttpRequest, form: UploadForm, status: int = 200) -> HttpResponse:
    rows = selectors.bundle_rows()
    context = {
        "bundles": bundle_rows_html(rows) if rows else "",
        "form": form,
        "max_bytes": settings.UPLOAD_MAX_BYTES,
    }
    return render(request, "updates/bundles.html", context, status=status)


@require_POST
@role_required(Role.OPERATOR)
def bundle_upload(request: HttpRequest) -> HttpResponse:
    """The upload form without JavaScript (the page's script posts to the API's `POST /bundles`
    for its progress bar); the same upload handler streams it to disk under the same limit."""
    try:
        form = UploadForm(files=request.FILES)
        status = 200 if form.is_valid() else 400
    except (UploadTooLarge, UploadIncomplete) as exc:  # the handler kept nothing of it
        form, status = UploadForm.refused(store_relative(f"Not uploaded: {exc}.")), 413
    if status != 200:
        return _bundles_page(request, form, status=status)
    upload = form.cleaned_data["file"]
    try:
        added = bundle_add_upload(upload=upload, actor=actor(request))
    except InvalidInput as exc:  # a delta bundle whose bases are missing: nothing was recorded
        return _bundles_page(request, UploadForm.refused(f"Not added: {exc}"), status=422)
    if added.existing:
        messages.info(request, f"This file is already bundle {added.bundle.pk}: nothing was added.")
    return redirect("bundle", bundle_id=added.bundle.pk)


@require_GET
@role_required(Role.VIEWER)
def bundle_detail(request: HttpRequest, bundle_id: int) -> HttpResponse:
    return _bundle_page(request, bundle_id, DeployForm())


def _bundle_page(request: HttpRequest, bundle_id: int, form: DeployForm, status: int = 200) -> HttpResponse:
    bundle = selectors.bundle_get(bundle_id=bundle_id)
    if bundle is None:
        raise Http404(f"bundle {bundle_id} does not exist")
    context: dict[str, Any] = {"bundle": bundle, "report": selectors.bundle_summary(bundle), "form": form}
    if bundle.status == bundle.Status.ACCEPTED:
        context.update(_plan(bundle_id))
        context["no_worker"] = _no_worker()
    return render(request, "updates/bundle.html", context, status=status)


def _plan(bundle_id: int) -> dict[str, Any]:
    try:
        plan = plan_preview(manifest_path=bundle_manifest_path(bundle_id=bundle_id))
    except OrchestratorError as exc:  # the bundle's files are gone, the system refuses it, …
        return {"plan_error": store_relative(str(exc))}
    return {"plan": plan, "overview": selectors.plan_overview(plan)}


@require_POST
@role_required(Role.OPERATOR)
def bundle_deploy(request: HttpRequest, bundle_id: int) -> HttpResponse:
    form = DeployForm(request.POST)
    if not form.is_valid():
        return _bundle_page(request, bundle_id, form, status=400)
    try:
        deployment = deployment_start_bundle(bundle_id=bundle_id, actor=actor(request))
    except BusyError as exc:
        messages.error(request, _busy_text(exc))
        return redirect("bundle", bundle_id=bundle_id)
    except OrchestratorError as exc:
        messages.error(request, store_relative(f"Not started: {exc}"))
        return redirect("bundle", bundle_id=bundle_id)
    return redirect("deployment", deployment_id=deployment.pk)


def _busy_text(exc: BusyError) -> str:
    """Not started because one is in progress: a link to it (what to follow or finish), not
    the runner's process id."""
    running = selectors.deployment_in_progress()
    if running is None:
        return f"Not started: {exc}"
    return format_html(
        'Not started: <a href="{}">deployment {}</a> ({}) is {}. Open it to follow it, or to resume or roll it back.',
        reverse("deployment", args=[running.pk]),
        running.pk,
        running.manifest.name,
        status_label(running.status).lower(),
    )


# ----- deployments ---------------------------------------------------------------------------------


@require_GET
@role_required(Role.VIEWER)
def deployment_detail(request: HttpRequest, deployment_id: int) -> HttpResponse:
    """The whole page, or (for htmx, on every event of the stream) just the timeline."""
    deployment = selectors.deployment_find(deployment_id=deployment_id)
    if deployment is None:
        raise Http404(f"deployment {deployment_id} does not exist")
    in_progress = deployment.status in deployment.IN_PROGRESS
    detail = selectors.deployment_timeline(deployment)
    waits = selectors.deployment_waits(deployment)
    # Where each component ended, once nobody moves it: not on every event of a running one.
    settled = not in_progress or waits
    outcomes = {o["key"]: o for o in selectors.deployment_components(deployment)} if settled else {}
    context = {
        "deployment": deployment,
        "detail": detail,
        "progress": selectors.deployment_progress(deployment),
        "in_progress": in_progress,
        "live": in_progress or detail["running"],
        "can_continue": waits,
        "outcomes": outcomes,
        "no_worker": (deployment.status == deployment.Status.QUEUED or waits) and _no_worker(),
        "gate_on_timeout": _on_timeout(deployment),
    }
    # Each step's link around its id (one `reverse` for the page), and the lanes drawn in Python.
    step_url = reverse("step", args=[deployment.pk, 0]).rpartition("0")[::2]
    context["lanes"] = history_html.lanes_html(detail["groups"], outcomes, (step_url[0], step_url[1]))
    fragment = request.headers.get("HX-Request") == "true"
    return render(request, "updates/_timeline.html" if fragment else "updates/deployment.html", context)


@require_GET
@role_required(Role.VIEWER)
def step_detail(request: HttpRequest, deployment_id: int, step_id: int) -> HttpResponse:
    step = selectors.step_get(deployment_id=deployment_id, step_id=step_id)
    if step is None:
        raise Http404(f"deployment {deployment_id} has no step {step_id}")
    report = selectors.step_report(step)
    context = {"step": report | {"status": selectors.step_status(report)}, "deployment_id": deployment_id}
    fragment = request.headers.get("HX-Request") == "true"
    return render(request, "updates/_step.html" if fragment else "updates/step.html", context)


def _on_timeout(deployment: Deployment) -> str:
    policy = deployment_policy(deployment)
    gate = policy.gate(deployment.gate) if policy and deployment.gate else None
    return gate.on_timeout if gate else ""


@require_POST
@role_required(Role.OPERATOR)
def deployment_decide(request: HttpRequest, deployment_id: int) -> HttpResponse:
    """Approve or reject the gate it waits at (docs/policy.md), with the form's reason."""
    decision = request.POST.get("decision")
    if decision not in ("approve", "reject"):  # a form without its button decides nothing
        messages.error(request, "Nothing decided: press Approve or Reject.")
        return redirect("deployment", deployment_id=deployment_id)
    approve = decision == "approve"
    reason = request.POST.get("reason", "")[:2000]
    try:
        deployment_gate_decide(
            deployment_id=deployment_id, approve=approve, actor=actor(request), reason=reason
        )
    except OrchestratorError as exc:
        messages.error(request, store_relative(f"Cannot {'approve' if approve else 'reject'}: {exc}"))
    else:
        then = "it goes on" if approve else "the system is rolled back"
        messages.info(request, f"Deployment {deployment_id} {'approved' if approve else 'rejected'}: {then}.")
    return redirect("deployment", deployment_id=deployment_id)


@require_POST
@role_required(Role.OPERATOR)
def deployment_resume(request: HttpRequest, deployment_id: int) -> HttpResponse:
    return _continue(request, deployment_id, deployment_resume_start, "resume")


@require_POST
@role_required(Role.OPERATOR)
def deployment_rollback(request: HttpRequest, deployment_id: int) -> HttpResponse:
    return _continue(request, deployment_id, deployment_rollback_start, "roll back")


@require_POST
@role_required(Role.OPERATOR)
def deployment_cancel(request: HttpRequest, deployment_id: int) -> HttpResponse:
    try:
        cancel_deployment(deployment_id=deployment_id, actor=actor(request))
    except OrchestratorError as exc:  # a runner took it meanwhile, or it does not exist
        messages.error(request, store_relative(f"Cannot cancel: {exc}"))
    else:
        messages.info(request, f"Deployment {deployment_id} cancelled before it started.")
    return redirect("deployment", deployment_id=deployment_id)


def _continue(request: HttpRequest, deployment_id: int, start: Callable[..., Any], verb: str) -> HttpResponse:
    try:
        start(deployment_id=deployment_id, actor=actor(request))
    except OrchestratorError as exc:  # not in progress, a worker has it, cleanup started
        messages.error(request, store_relative(f"Cannot {verb}: {exc}"))
        return redirect("deployment", deployment_id=deployment_id)
    if _no_worker():  # asked all the same: the first worker to start carries it out
        messages.warning(
            request, f"Asked to {verb} deployment {deployment_id}, but no worker is running yet."
        )
    else:
        messages.info(request, f"A worker will {verb} deployment {deployment_id}.")
    return redirect("deployment", deployment_id=deployment_id)


# ----- history and audit ---------------------------------------------------------------------------


def _start_of(day: date | None) -> datetime | None:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone()) if day else None


def _period(data: dict[str, Any]) -> dict[str, datetime | None]:
    """A form's days as the selectors' datetimes: `until` is inclusive (the whole day)."""
    until = data.get("until")
    return {
        "since": _start_of(data.get("since")),
        "until": _start_of(until + timedelta(days=1) if until else None),
    }


@require_GET
@role_required(Role.VIEWER)
def history(request: HttpRequest) -> HttpResponse:
    form = HistoryFilterForm(request.GET)
    data = form.cleaned_data if form.is_valid() else {}
    filters = selectors.DeploymentFilter(
        status=data.get("status"), manifest=data.get("manifest"), **_period(data)
    )
    number, after = _page_number(request), _after(request)
    rows, count = selectors.deployment_page(filters=filters, page=number, page_size=PAGE_SIZE, after=after)
    pages = max(1, -(-count // PAGE_SIZE))
    if number > pages or (after is not None and not rows and count):
        # Past the end (a filter narrowed the list, or nothing is older): show the last page.
        number = min(number, pages) if after is None else pages
        rows, count = selectors.deployment_page(filters=filters, page=number, page_size=PAGE_SIZE)
    context = {
        "form": form,
        "filter_fields": history_html.fields_html(form, ("status", "since", "until", "manifest")),
        "rows_html": history_html.rows_html(selectors.deployment_rows(rows)),
        # `last`: the "Older" link pages by keyset (`after`), at the cost of the first page
        # however deep; `page` rides along for the page's number.
        "page": {"number": number, "pages": pages, "count": count, "last": rows[-1]["id"] if rows else None},
        "chart": history_html.chart_html(),
        "query": _query_without_page(request),
    }
    return render(request, "updates/history.html", context)


MAX_PAGE = 10**9  # the API's bound too: beyond it an OFFSET no longer fits the database's integer


def _page_number(request: HttpRequest) -> int:
    value = request.GET.get("page", "1")
    # ASCII digits only: `isdigit` also says yes to "²", which int() refuses.
    return min(MAX_PAGE, max(1, int(value))) if value.isascii() and value.isdigit() else 1


def _after(request: HttpRequest) -> int | None:
    """`?after=ID`: the page of deployments older than that one (the "Older" link)."""
    value = request.GET.get("after", "")
    return min(MAX_PAGE, int(value)) if value.isascii() and value.isdigit() else None


def _query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("after", None)
    return str(query.urlencode())


PERIOD = ("since", "until")
# The Audit page prints at most this many deployments, the newest of the period: a report of
# years of history is a download, not a page (the CSV and JSON take the whole period).
AUDIT_PAGE_DEPLOYMENTS = 50


@require_GET
@role_required(Role.VIEWER)
def audit(request: HttpRequest) -> HttpResponse:
    """The printable report, or the same journal record as the API's CSV / JSON download."""
    form = PeriodForm(request.GET)
    if not form.is_valid():
        context = {"form": form, "rows": [], "filter_fields": history_html.fields_html(form, PERIOD)}
        return render(request, "updates/audit.html", context, status=400)
    period = _period(form.cleaned_data)
    fmt = request.GET.get("format", "")
    download = fmt in ("csv", "steps-csv", "json")
    report = audit_report(**period, verify=False, newest=None if download else AUDIT_PAGE_DEPLOYMENTS)
    if fmt in ("csv", "steps-csv"):
        steps = fmt == "steps-csv"
        body = report_csv(report, steps=steps)
        response = HttpResponse(body, content_type="text/csv; charset=utf-8")
        return _attachment(response, "audit-steps.csv" if steps else "audit.csv")
    if fmt == "json":
        body = json.dumps(report["deployments"], cls=DjangoJSONEncoder, indent=1)
        return _attachment(HttpResponse(body, content_type="application/json"), "audit.json")
    # Checking the chain reads every journal entry: on request, not on every visit.
    journal = audit_verify() if request.GET.get("verify") else None
    query = request.GET.copy()
    query.pop("verify", None)
    context = {
        "form": form,
        "filter_fields": history_html.fields_html(form, PERIOD),
        "rows": report["deployments"],
        "more": report["more"],
        "shown": AUDIT_PAGE_DEPLOYMENTS,
        "query": query.urlencode(),
        "journal": journal,
    }
    return render(request, "updates/audit.html", context)


def _attachment(response: HttpResponse, name: str) -> HttpResponse:
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


# ----- the user's API tokens -----------------------------------------------------------------------


@require_GET
@role_required(Role.VIEWER)
def token_list(request: HttpRequest) -> HttpResponse:
    return _tokens_page(request, TokenCreateForm(role=accounts_selectors.role_of(request.user)))


def _tokens_page(
    request: HttpRequest, form: TokenCreateForm, status: int = 200, secret: str = ""
) -> HttpResponse:
    tokens = accounts_selectors.token_list(username=request.user.get_username())
    return render(
        request, "updates/tokens.html", {"tokens": tokens, "form": form, "secret": secret}, status=status
    )


@require_POST
@role_required(Role.VIEWER)
def token_create(request: HttpRequest) -> HttpResponse:
    form = TokenCreateForm(request.POST, role=accounts_selectors.role_of(request.user))
    if not form.is_valid():
        return _tokens_page(request, form, status=400)
    try:
        new = accounts_services.token_create(
            username=request.user.get_username(), actor=actor(request), **form.token_args()
        )
    except accounts_services.AccessError as exc:
        form.add_error("name", str(exc))
        return _tokens_page(request, form, status=400)
    # Shown on this response only: the database keeps its hash. no-store: not kept by the
    # browser's cache or history either, where Back would show it to the next person.
    response = _tokens_page(
        request, TokenCreateForm(role=accounts_selectors.role_of(request.user)), secret=new.secret
    )
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@role_required(Role.VIEWER)
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    mine = accounts_selectors.token_list(username=request.user.get_username()).filter(pk=token_id).exists()
    if not mine and not accounts_selectors.role_of(request.user) == Role.ADMIN:
        raise PermissionDenied("not your token")
    try:
        token = accounts_services.token_revoke(token_id=token_id, actor=actor(request))
    except accounts_services.AccessError as exc:  # only an admin gets here for another's id
        raise Http404(str(exc)) from None
    messages.info(request, f"Token {token.name} revoked.")
    return redirect(_on_site(request, request.POST.get("next", "")) or "tokens")


def _on_site(request: HttpRequest, url: str) -> str | None:
    """`url` when it leads to this site, else None: a form's `next` is the client's word."""
    allowed = url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return url if url and allowed else None


# ----- administration (admin role) -----------------------------------------------------------------


@require_GET
@role_required(Role.ADMIN)
def admin_home(request: HttpRequest) -> HttpResponse:
    return _admin_page(request, UserCreateForm())


def _admin_page(
    request: HttpRequest, form: UserCreateForm, status: int = 200, new_secret: str = ""
) -> HttpResponse:
    context = {
        "users": accounts_selectors.user_list(),
        "tokens": accounts_selectors.token_list(),
        "form": form,
        "roles": list(Role),
        "keys": selectors.trusted_keys(),
        "hook_secret_set": hook_secret_is_set(),
        "new_secret": new_secret,
    }
    return render(request, "updates/admin.html", context, status=status)


@require_POST
@role_required(Role.ADMIN)
def admin_hook_secret_rotate(request: HttpRequest) -> HttpResponse:
    """The new secret is in this one answer only (never in a redirect, a message or a log)."""
    secret = hook_secret_rotate(actor=actor(request))
    response = _admin_page(request, UserCreateForm(), new_secret=secret)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@role_required(Role.ADMIN)
def admin_user_create(request: HttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST)
    if not form.is_valid():
        return _admin_page(request, form, status=400)
    user = accounts_services.user_create(actor=actor(request), **form.cleaned_data)
    messages.info(request, f"User {user.username} created.")
    return redirect("admin-home")


@require_POST
@role_required(Role.ADMIN)
def admin_user_role(request: HttpRequest, user_id: int) -> HttpResponse:
    form = RoleForm(request.POST)
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        raise Http404(f"user {user_id} does not exist")
    if not form.is_valid():
        messages.error(request, f"Role not changed: {form.errors.as_text()}")
    elif user.pk == request.user.pk:
        messages.error(request, "You cannot change your own role (ask another admin).")
    else:
        accounts_services.user_set_role(
            username=user.username, role=form.cleaned_data["role"], actor=actor(request)
        )
        messages.info(request, f"{user.username} is now {form.cleaned_data['role']}.")
    return redirect("admin-home")
