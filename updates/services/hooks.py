"""Mender webhooks and CI deployment requests (POST /api/v1/hooks/mender), and the hook secret.

Order of checks, each for a reason: the signature first (an unsigned call is logged, rate
limited, and nothing else: no row, no parsing beyond the bytes); then the event id (a replay gets
the first answer again and starts nothing, even once its time has left the window); then the
time (a signed body captured on the wire is useless after five minutes); then the work.

The event row is claimed in its own short transaction before any work, so a second delivery
of the same id, even a concurrent one, never starts anything; the deployment and the answer are
written in one transaction, so a recorded answer always matches what was started. A request by
URL is answered 202 at once and the row becomes a job: a worker fetches the URL outside any
transaction (`hook_fetch_run`; the address guard, deadline and size cap of docs/security.md §4)
and writes the outcome on the row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from audit.services import journal_append
from updates.actors import Actor
from updates.engine import hooks as engine
from updates.engine.bundle import sniff
from updates.engine.errors import BusyError, OrchestratorError, Unauthorized, error_envelope
from updates.engine.fetchguard import AddressGuard, AddressRefused
from updates.engine.hooks import (
    BundleNotUsable,
    BundleRejected,
    DownloadFailed,
    DownloadTooLarge,
    EventInProgress,
    HookEvent,
    HookRefused,
    OutsideReplayWindow,
    OwnDevice,
    PlanRefused,
    SecretError,
    UrlRefused,
    refusal_again,
)
from updates.engine.manifest import InputError
from updates.engine.planner import SelectionError
from updates.engine.server import ServerError, ServerSettings, TooLarge, download, url_check
from updates.models import Bundle, Deployment, WebhookEvent
from updates.services import bundles, dispatch
from updates.services.environment import environment_load
from updates.services.hook_secret import hook_secret_path

log = logging.getLogger("orchestrator.hooks")


@dataclass(frozen=True)
class HookAnswer:
    """What a webhook did (200 recorded, 202 refresh or deployment queued); a refusal is raised."""

    status: int
    body: dict[str, Any]


class HookUnauthorized(Unauthorized):
    """No secret is set, or the signature is missing or wrong: 401, nothing recorded."""


def event_actor(event_id: str) -> Actor:
    """A webhook event as the actor of what it records and starts (`selectors.webhook_event_for_actor`)."""
    return Actor("webhook", event_id)


# ----- receiving ------------------------------------------------------------------------------------


def hook_event_receive(*, body: bytes, signature: str | None, remote_addr: str) -> HookAnswer:
    """Handle one webhook. Raises HookUnauthorized (nothing recorded), EventError (a body that is
    no event: nothing recorded), and every other refusal (a domain error: `HookRefused`,
    `BusyError`) after recording it as the event's answer, which a replay gets again."""
    _authenticate(body, signature, remote_addr)
    event = engine.parse_event(body)
    claimed = _claim(event, body, remote_addr)
    if isinstance(claimed, HookAnswer):
        return claimed
    problem = engine.time_problem(event, timezone.now())
    if problem is not None:
        raise _refused(claimed, OutsideReplayWindow(problem))
    if event.type == engine.DEPLOYMENT_REQUESTED:
        return _deployment_requested(claimed, event)
    return _device_event(claimed, event)


def _authenticate(body: bytes, signature: str | None, remote_addr: str) -> None:
    try:
        secret = engine.secret_read(hook_secret_path())
    except SecretError as exc:
        _unauthorized_log.warning("webhook from %s refused: %s", remote_addr, exc)
        raise HookUnauthorized("no usable hook secret")
    if secret is None:
        _unauthorized_log.warning(
            "webhook from %s refused: no hook secret set (orchestrator hook-secret set|rotate)", remote_addr
        )
        raise HookUnauthorized("no hook secret")
    if not engine.signature_ok(secret, body, signature):
        reason = "bad X-Men-Signature" if signature else "no X-Men-Signature"
        _unauthorized_log.warning("webhook from %s refused: %s", remote_addr, reason)
        raise HookUnauthorized(reason)


def _claim(event: HookEvent, body: bytes, remote_addr: str) -> WebhookEvent | HookAnswer:
    """The row for a new event id; for a known one, the first answer (or 409 while in work)."""
    own = own_device().matches(event)
    try:
        with transaction.atomic():
            row: WebhookEvent = WebhookEvent.objects.create(
                event_id=event.id,
                type=event.type,
                event_time=event.time,
                data=dict(event.data),
                device_id=event.device_id,
                own_device=own,
                remote_addr=remote_addr[:100],
                body_sha256=hashlib.sha256(body).hexdigest(),
            )
            journal_append(
                kind="webhook.received",
                actor=event_actor(event.id),
                subject=f"webhook:{event.id}",
                data={"type": event.type, "body_sha256": row.body_sha256, "remote_addr": row.remote_addr},
            )
    except IntegrityError:
        return _replayed(event.id)
    return row


def _replayed(event_id: str) -> HookAnswer:
    first = WebhookEvent.objects.get(event_id=event_id)
    WebhookEvent.objects.filter(pk=first.pk).update(replays=F("replays") + 1)
    log.info("webhook event %s replayed: answering as the first time, starting nothing", event_id)
    if first.answer_status is None:
        raise EventInProgress(f"event {event_id} is still being handled; its answer is not known yet")
    answer: dict[str, Any] = json.loads(first.answer_body)
    if first.answer_status >= 400:
        error = answer.get("error", {})
        code, message = str(error.get("code", "")), str(error.get("message", ""))
        raise refusal_again(first.answer_status, code, message, error.get("details"))
    return HookAnswer(first.answer_status, answer)


def _finish(row: WebhookEvent, status: int, body: dict[str, Any], action: str) -> HookAnswer:
    row.answer_status, row.answer_body, row.action = status, json.dumps(body), action
    row.save(update_fields=["answer_status", "answer_body", "action", "bundle", "deployment"])
    return HookAnswer(status, body)


def _summary(row: WebhookEvent, action: str) -> dict[str, Any]:
    return {
        "event": row.event_id,
        "type": row.type,
        "device_id": row.device_id,
        "own_device": row.own_device,
        "action": action,
    }


# ----- device events ---------------------------------------------------------------------------------


def _device_event(row: WebhookEvent, event: HookEvent) -> HookAnswer:
    if not (row.own_device and event.type in settings.HOOKS_REFRESH_ON):
        return _finish(row, 200, _summary(row, "recorded"), WebhookEvent.Action.RECORDED)
    with transaction.atomic():
        dispatch.components_refresh_start()  # sent when this commits
        return _finish(row, 202, _summary(row, "refresh"), WebhookEvent.Action.REFRESH)


def own_device() -> OwnDevice:
    """This system's Mender device: ORCH_MENDER_DEVICE_ID, else the `sub` of the device token
    configured for the artifact server (Mender's device JWT names the device), plus the identity
    data of ORCH_MENDER_IDENTITY for `device-provisioned` events."""
    device_id = settings.MENDER_DEVICE_ID
    if not device_id:
        try:
            server = environment_load().config.artifact_server
        except InputError:
            server = None  # a broken config is reported by the commands that need it
        device_id = engine.jwt_subject(server.token or "") if server else ""
    return OwnDevice(device_id=device_id, identity=dict(settings.MENDER_IDENTITY))


# ----- deployment requests ------------------------------------------------------------------------------


def _deployment_requested(row: WebhookEvent, event: HookEvent) -> HookAnswer:
    key, value = event.deployment_source()
    if isinstance(value, str):
        return _fetch_queue(row, key, value)
    try:
        manifest = bundles.bundle_manifest_path(bundle_id=value)
    except (bundles.BundleNotFound, bundles.BundleNotAccepted) as exc:
        raise _refused(row, BundleNotUsable(str(exc), {"bundle_id": value})) from None
    return _deploy(row, manifest)


def _deploy(row: WebhookEvent, manifest: Path) -> HookAnswer:
    try:
        with transaction.atomic():
            deployment = dispatch.deployment_start(manifest_path=manifest, actor=event_actor(row.event_id))
            row.deployment = deployment
            body = _summary(row, "deployment") | {
                "deployment": {"id": deployment.pk, "status": deployment.status},
                "bundle": row.bundle_id,
            }
            return _finish(row, 202, body, WebhookEvent.Action.DEPLOYMENT)
    except BusyError as exc:
        raise _refused(row, exc) from None
    except (InputError, SelectionError) as exc:
        problems = [str(p) for p in exc.problems]
        message = "the deployment was refused before anything ran"
        raise _refused(row, PlanRefused(message, problems)) from None


def _refused(row: WebhookEvent, error: HookRefused | BusyError) -> OrchestratorError:
    """Record the refusal as the event's answer (in the API's envelope, as answered), and return
    it for the caller to raise: the API edge maps it (updates/api/errors.py)."""
    log.warning("webhook event %s refused: %s", row.event_id, error)
    details = error.details if isinstance(error, HookRefused) else None
    body = error_envelope(error.code, str(error), details)
    _finish(row, error.http_status, body, WebhookEvent.Action.REFUSED)
    return error


# ----- deployment requests by URL: a job row, fetched on a worker ---------------------------------------


def _fetch_queue(row: WebhookEvent, key: str, url: str) -> HookAnswer:
    """Answer 202 at once and leave the fetch to a worker: a slow or hostile server must not
    hold a web process. What can be refused without the network (the scheme, an address written
    into the URL) is refused here, in the answer."""
    try:
        url_check(url, _guard())
    except (ServerError, AddressRefused) as exc:
        raise _refused(row, UrlRefused(str(exc), {"field": f"data.{key}"})) from None
    with transaction.atomic():
        row.fetch_status = WebhookEvent.Fetch.QUEUED
        row.save(update_fields=["fetch_status"])
        dispatch.webhook_fetch_start(event_pk=row.pk)  # sent when this commits
        return _finish(row, 202, _summary(row, "fetch"), WebhookEvent.Action.FETCH)


def hook_fetch_run(*, event_pk: int) -> str:
    """The worker's half of a deployment request by URL: fetch, ingest, queue the deployment.
    Claimed with a conditional UPDATE, so a redelivered message does nothing. The outcome is on
    the row (`fetch_status`, `fetch_error`, `bundle`, `deployment`); a failure is journaled."""
    claimed = WebhookEvent.objects.filter(pk=event_pk, fetch_status=WebhookEvent.Fetch.QUEUED).update(
        fetch_status=WebhookEvent.Fetch.RUNNING
    )
    if not claimed:
        return f"webhook event row {event_pk}: not queued for a fetch (done already, or unknown)"
    row = WebhookEvent.objects.get(pk=event_pk)
    key = next(k for k in engine.DEPLOYMENT_SOURCES if k in row.data)
    try:
        bundle_id = _fetch_bundle(row, key, str(row.data[key]))
        deployment = _fetched_deploy(row, bundles.bundle_manifest_path(bundle_id=bundle_id))
    except OrchestratorError as exc:  # every refusal, BusyError, BundleNotFound
        _fetch_failed(row, exc)
        return f"webhook event {row.event_id}: fetch failed: {exc}"
    return f"webhook event {row.event_id}: deployment {deployment.pk} queued"


def _fetch_bundle(row: WebhookEvent, key: str, url: str) -> int:
    """Download the bundle (artifact server TLS rules, the address guard, a deadline, a size
    limit) and ingest it; its id. Every failure is raised as a HookRefused that names what went
    wrong in our words, never with what the URL served."""
    field = {"field": f"data.{key}"}
    env = environment_load()
    folder = env.datastore / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder) as tmp:
        try:
            size = download(url, tmp, settings=_download_settings(url, env.config), max_bytes=_limit())
        except AddressRefused as exc:
            raise UrlRefused(str(exc), field) from None
        except TooLarge as exc:
            raise DownloadTooLarge(str(exc), field) from None
        except ServerError as exc:
            raise DownloadFailed(str(exc), field) from None
        tmp.seek(0)
        if sniff(tmp.read(512)) not in _ARCHIVES:
            # Not ingested at all: a rejected bundle's problems would quote what was served
            # (a YAML error quotes its line; an unknown file its first bytes).
            raise BundleNotUsable(
                f"{_where(url)}: not a bundle (a fetched bundle is a .tar, .tar.gz or .mender)"
            )
        tmp.seek(0)
        bundle = bundles.bundle_add(
            source=tmp, filename=_filename(url), size_hint=size, actor=event_actor(row.event_id)
        )
    WebhookEvent.objects.filter(pk=row.pk).update(bundle=bundle)
    if bundle.status != Bundle.Status.ACCEPTED:
        raise BundleRejected(
            f"bundle {bundle.pk} was rejected (its problems are on its page)", {"bundle_id": bundle.pk}
        )
    bundle_id: int = bundle.pk
    return bundle_id


_ARCHIVES = ("tar", "tar.gz", "manifest-artifact")


def _fetched_deploy(row: WebhookEvent, manifest: Path) -> Deployment:
    try:
        with transaction.atomic():
            deployment = dispatch.deployment_start(manifest_path=manifest, actor=event_actor(row.event_id))
            WebhookEvent.objects.filter(pk=row.pk).update(
                deployment=deployment, fetch_status=WebhookEvent.Fetch.DONE
            )
            return deployment
    except (InputError, SelectionError) as exc:
        problems = [str(p) for p in exc.problems]
        raise PlanRefused("the deployment was refused before anything ran", problems) from None


def _fetch_failed(row: WebhookEvent, error: OrchestratorError) -> None:
    log.warning("webhook event %s: fetch failed: %s", row.event_id, error)
    with transaction.atomic():
        WebhookEvent.objects.filter(pk=row.pk).update(
            fetch_status=WebhookEvent.Fetch.FAILED, fetch_error=f"{error.code}: {error}"
        )
        journal_append(
            kind="webhook.fetch_failed",
            actor=event_actor(row.event_id),
            subject=f"webhook:{row.event_id}",
            data={"code": error.code, "message": str(error)},
        )


def _guard() -> AddressGuard:
    return AddressGuard.from_entries(settings.HOOKS_FETCH_ALLOW)


def _where(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"  # never the query: signed links carry secrets


def _download_settings(url: str, config: Any) -> ServerSettings:
    server = config.artifact_server
    return ServerSettings(
        url=url,
        timeout=float(server.timeout_seconds) if server else 30.0,
        retries=server.retries if server else 3,
        cafile=config.server_certificate,
        guard=_guard(),
        deadline=float(settings.HOOKS_FETCH_SECONDS),
    )


def _limit() -> int:
    return int(settings.HOOKS_DOWNLOAD_MAX_BYTES)


def _filename(url: str) -> str:
    return Path(urllib.parse.urlsplit(url).path).name


# ----- logging refusals without letting a flood fill the log ----------------------------------------------


class _RateLimitedLog:
    """At most one line per `interval` seconds; the next line says how many were held back."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self.logger = logger
        self.interval = interval
        self.last = -interval
        self.held = 0
        self.lock = threading.Lock()

    def warning(self, message: str, *args: object) -> None:
        with self.lock:
            now = time.monotonic()
            if now - self.last < self.interval:
                self.held += 1
                return
            held, self.held, self.last = self.held, 0, now
        suffix = f" ({held} more refused since the last line)" if held else ""
        self.logger.warning(message + suffix, *args)


_unauthorized_log = _RateLimitedLog(log, interval=10.0)
