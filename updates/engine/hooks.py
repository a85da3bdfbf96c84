"""Mender webhooks, as a Mender server sends them, and the deployment requests CI signs the same way.

What Mender sends (iot-manager, `model.WebhookEvent` and `client.NewSignedRequest`): a POST of
the JSON ``{"id", "type", "data", "time"}`` with ``X-Men-Signature`` = hex HMAC-SHA256 of the
raw body. The integration's secret is entered in Mender as a *hex string* and Mender keys the
HMAC with the bytes it decodes to, so we do the same: the secret is hex, the key its bytes.

``data`` by type: ``device-provisioned`` the device (``id``, ``status``, ``auth_sets`` with
``identity_data``, ``created_ts``); ``device-status-changed`` ``id`` and ``status``;
``device-decommissioned`` only ``id``; ``device-inventory-changed`` ``device_id``,
``tenant_id`` and ``inventory``. Ours, for CI and Mender-side automation:
``deployment-requested`` with one of ``bundle_id``, ``bundle_url`` or ``artifact_url``.

Pure Python (no Django): parsing reports every problem at once, each naming its field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from updates.engine.errors import BusyError, ExitCode, OrchestratorError, Refused
from updates.engine.fsutil import fsync_dir, private_file_mode

DEVICE_EVENTS = (
    "device-provisioned",
    "device-decommissioned",
    "device-status-changed",
    "device-inventory-changed",
)
# The name for Mender's `device-inventory-changed`; recorded under Mender's name.
ALIASES = {"inventory-changed": "device-inventory-changed"}
DEPLOYMENT_REQUESTED = "deployment-requested"
DEPLOYMENT_SOURCES = ("bundle_id", "bundle_url", "artifact_url")
REPLAY_WINDOW = timedelta(minutes=5)
SECRET_MIN_HEX = 32  # 128 bits
SECRET_MAX_HEX = 64  # Mender accepts at most 64 hex digits (`[0-9a-f]{1,64}`)
_EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


# ----- refusals: what a webhook is answered when nothing (more) is done ---------------------------


class HookRefused(Refused):
    """A webhook refused after its signature was checked; recorded as the event's answer."""

    code = "hook_refused"
    exit_code = ExitCode.INVALID
    http_status = 422


class EventError(HookRefused):
    """The body is not a usable event; every problem, each naming its field."""

    code = "invalid_event"

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        self.problems = list(problems)
        details = [{"field": p.field, "message": p.message} for p in self.problems]
        super().__init__("; ".join(str(p) for p in self.problems), details)


class OutsideReplayWindow(HookRefused):
    code = "replay_window"


class EventInProgress(HookRefused):
    """The same event id again while its first delivery is still being handled."""

    code = "event_in_progress"
    http_status = 409


class BundleNotUsable(HookRefused):
    code = "bundle_not_usable"


class BundleRejected(HookRefused):
    code = "bundle_rejected"


class PlanRefused(HookRefused):
    code = "plan_refused"


class UrlRefused(HookRefused):
    code = "url_refused"


class DownloadTooLarge(HookRefused):
    code = "download_too_large"


class DownloadFailed(HookRefused):
    """The bundle's URL could not be fetched (unreachable, an HTTP error)."""

    code = "download_failed"
    exit_code = ExitCode.FAILED
    http_status = 502


_RECORDED: dict[str, type[HookRefused]] = {
    c.code: c
    for c in (
        EventError,
        OutsideReplayWindow,
        EventInProgress,
        BundleNotUsable,
        BundleRejected,
        PlanRefused,
        UrlRefused,
        DownloadTooLarge,
        DownloadFailed,
    )
}


def refusal_again(status: int, code: str, message: str, details: Any = None) -> OrchestratorError:
    """A recorded refusal as the error to raise again for a replay of its event: the same code,
    status, message and details as the first answer."""
    # "deployment_in_progress" was this answer's code before the API's one `busy` (docs/api.md).
    if code in (BusyError.code, "deployment_in_progress"):
        return BusyError(message)
    known = _RECORDED.get(code)
    if known is not None and known.http_status == status and known is not EventError:
        return known(message, details)
    # An answer recorded under a code this version does not raise: kept exactly as it was.
    recorded = type("RecordedRefusal", (HookRefused,), {"code": code, "http_status": status})
    error: OrchestratorError = recorded(message, details)
    return error


class SecretError(Exception):
    """The hook secret is missing, unreadable or not what Mender accepts."""


@dataclass(frozen=True)
class HookEvent:
    id: str
    type: str
    time: datetime
    data: Mapping[str, Any]

    @property
    def device_id(self) -> str:
        """The Mender device the event is about ("" for a deployment request)."""
        key = "device_id" if self.type == "device-inventory-changed" else "id"
        value = self.data.get(key) if self.type in DEVICE_EVENTS else None
        return value if isinstance(value, str) else ""

    def identities(self) -> list[Mapping[str, Any]]:
        """The identity data of a provisioned device's authentication sets."""
        sets = self.data.get("auth_sets") if self.type == "device-provisioned" else None
        found = [s.get("identity_data") for s in sets or () if isinstance(s, dict)]
        return [i for i in found if isinstance(i, dict)]

    def deployment_source(self) -> tuple[str, int | str]:
        """(key, value) of a deployment request: the bundle id or the URL to fetch."""
        key = next(k for k in DEPLOYMENT_SOURCES if k in self.data)
        value = self.data[key]
        assert isinstance(value, int | str)
        return key, value


# ----- signature ------------------------------------------------------------------------------------


def signature(secret_hex: str, body: bytes) -> str:
    return hmac.new(bytes.fromhex(secret_hex), body, hashlib.sha256).hexdigest()


def signature_ok(secret_hex: str, body: bytes, header: str | None) -> bool:
    """Constant-time comparison; the header is compared as bytes, whatever it holds."""
    if not header:
        return False
    expected = signature(secret_hex, body).encode()
    return hmac.compare_digest(expected, header.strip().lower().encode("utf-8", "replace"))


# ----- the secret file -------------------------------------------------------------------------------


def secret_check(text: str) -> str:
    """The secret as Mender takes it: lowercase hex digits, an even count, 32 to 64 of them."""
    secret = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]*", secret):
        raise SecretError("the secret must be hexadecimal digits (Mender's webhook secret is hex)")
    if not SECRET_MIN_HEX <= len(secret) <= SECRET_MAX_HEX or len(secret) % 2:
        raise SecretError(
            f"the secret must be an even number of {SECRET_MIN_HEX} to {SECRET_MAX_HEX} hex digits, "
            f"not {len(secret)}"
        )
    return secret


def secret_generate() -> str:
    return secrets.token_hex(SECRET_MAX_HEX // 2)


def secret_write(path: Path, secret: str) -> None:
    """Replace the secret atomically; the file is created 0600 (0640 in the shared data store of a
    production install, where the web server runs as the service user), never readable by others."""
    secret = secret_check(secret)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, private_file_mode(path.parent))
    try:
        os.write(fd, f"{secret}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    fsync_dir(path.parent)


def secret_read(path: Path) -> str | None:
    """The secret, or None when none was set. A file others can read is refused: the key is
    stored as is (an HMAC key cannot be a hash), so its mode is its only protection."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SecretError(f"{path}: cannot read: {exc.strerror or exc}")
    # The service group may read it in the shared data store (group_shared), nobody else.
    allowed = private_file_mode(path.parent)
    if mode & 0o777 & ~allowed:
        raise SecretError(f"{path}: mode {mode & 0o777:04o} lets others read it; it must be {allowed:04o}")
    try:
        return secret_check(text)
    except SecretError as exc:
        raise SecretError(f"{path}: {exc}")


# ----- parsing ------------------------------------------------------------------------------------


def parse_event(body: bytes) -> HookEvent:
    try:
        # NaN and Infinity are not JSON (RFC 8259): refused here, not stored to fail later.
        doc = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise EventError([FieldProblem("(body)", "JSON nested too deeply")])
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventError([FieldProblem("(body)", f"not JSON: {exc}")])
    if not isinstance(doc, dict):
        raise EventError([FieldProblem("(body)", "must be a JSON object")])
    problems: list[FieldProblem] = []
    event_id = _event_id(doc.get("id"), problems)
    kind = _event_type(doc.get("type"), problems)
    when = _event_time(doc.get("time"), problems)
    data = doc.get("data")
    if not isinstance(data, dict):
        problems.append(FieldProblem("data", "must be a JSON object"))
        data = {}
    _check_data(kind, data, problems)
    if problems:
        raise EventError(problems)
    assert when is not None
    return HookEvent(id=event_id, type=kind, time=when, data=data)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value")


def _event_id(value: object, problems: list[FieldProblem]) -> str:
    if isinstance(value, str) and _EVENT_ID.fullmatch(value):
        return value
    problems.append(FieldProblem("id", "must be a string of 1 to 100 letters, digits and ._:-"))
    return ""


def _event_type(value: object, problems: list[FieldProblem]) -> str:
    kind = ALIASES.get(value, value) if isinstance(value, str) else value
    if kind in (*DEVICE_EVENTS, DEPLOYMENT_REQUESTED):
        return str(kind)
    known = ", ".join((*DEVICE_EVENTS, DEPLOYMENT_REQUESTED))
    problems.append(FieldProblem("type", f"{value!r} is not one of {known}"))
    return ""


def _event_time(value: object, problems: list[FieldProblem]) -> datetime | None:
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        problems.append(FieldProblem("time", "must be an RFC 3339 time with its offset (e.g. ...Z)"))
        return None
    return when


def _check_data(kind: str, data: Mapping[str, Any], problems: list[FieldProblem]) -> None:
    if kind == DEPLOYMENT_REQUESTED:
        _check_deployment(data, problems)
    elif kind == "device-inventory-changed":
        _check_string(data, "device_id", problems)
    elif kind in DEVICE_EVENTS:
        _check_string(data, "id", problems)


def _check_string(data: Mapping[str, Any], key: str, problems: list[FieldProblem]) -> None:
    if not isinstance(data.get(key), str) or not data[key]:
        problems.append(FieldProblem(f"data.{key}", "must be a non-empty string (the Mender device ID)"))


def _check_deployment(data: Mapping[str, Any], problems: list[FieldProblem]) -> None:
    given = [k for k in DEPLOYMENT_SOURCES if k in data]
    if len(given) != 1:
        problems.append(FieldProblem("data", f"must name exactly one of {', '.join(DEPLOYMENT_SOURCES)}"))
        return
    key, value = given[0], data[given[0]]
    if key == "bundle_id" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        problems.append(FieldProblem("data.bundle_id", "must be a positive integer"))
    elif key != "bundle_id" and (not isinstance(value, str) or not value):
        problems.append(FieldProblem(f"data.{key}", "must be a non-empty URL string"))


def time_problem(event: HookEvent, now: datetime) -> str | None:
    """Outside the replay window (either direction): a captured body cannot be sent again later."""
    skew = event.time - now
    if abs(skew) <= REPLAY_WINDOW:
        return None
    direction = "ahead of" if skew > timedelta(0) else "behind"
    minutes, seconds = divmod(int(abs(skew).total_seconds()), 60)
    limit = int(REPLAY_WINDOW.total_seconds() // 60)
    return (
        f"time {event.time.isoformat()} is {minutes} min {seconds} s {direction} this server's clock "
        f"(limit {limit} minutes)"
    )


# ----- this system's own device --------------------------------------------------------------------


@dataclass(frozen=True)
class OwnDevice:
    """How this appliance recognises events about the Mender device it runs on: its Mender
    device ID, and (for `device-provisioned`, sent before anyone knows the ID) its identity."""

    device_id: str = ""
    identity: Mapping[str, str] = field(default_factory=dict)

    def matches(self, event: HookEvent) -> bool:
        if self.device_id and event.device_id == self.device_id:
            return True
        return bool(self.identity) and any(self._same(i) for i in event.identities())

    def _same(self, identity: Mapping[str, Any]) -> bool:
        return all(str(identity.get(k)) == str(v) for k, v in self.identity.items())


def jwt_subject(token: str) -> str:
    """The `sub` claim of a Mender device token: the device ID Mender gave this device. Not
    verified: the token is our own configured credential, and only names ourselves."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        return ""
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) else ""
