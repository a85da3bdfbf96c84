"""Webhook parsing, signatures and the secret file, without Django. Bodies are shaped exactly as
Mender's iot-manager sends them (model.WebhookEvent: id, type, data, time in Go's RFC 3339 with
nanoseconds); signatures are checked against what `openssl` computes."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from updates.engine import hooks
from updates.engine.hooks import EventError, OwnDevice, SecretError

SECRET = "6d656e6465722d776562686f6f6b2d7365637265742d666f722d746573747321"
DEVICE = "6543b2c8f1e2d3a4b5c6d7e8"
NOW = datetime(2026, 11, 29, 20, 0, 0, tzinfo=UTC)


def mender_event(kind: str, data: dict[str, object], when: str = "2026-11-29T20:00:01.123456789Z") -> bytes:
    # Go's encoding/json: keys in struct order, no spaces.
    doc = {"id": "3f1c2e4d-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "type": kind, "data": data, "time": when}
    return json.dumps(doc, separators=(",", ":")).encode()


PROVISIONED: dict[str, object] = {
    "id": DEVICE,
    "status": "accepted",
    "auth_sets": [
        {
            "id": "a1b2c3d4-0000-4000-8000-000000000001",
            "device_id": DEVICE,
            "identity_data": {"mac": "02:42:ac:11:00:02"},
            "pubkey": "-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n-----END PUBLIC KEY-----\n",
            "status": "accepted",
            "ts": "2026-11-29T19:59:58.5Z",
        }
    ],
    "created_ts": "2026-11-29T19:59:58.5Z",
}


def test_it_signs_like_openssl_with_the_hex_key() -> None:
    body = mender_event("device-status-changed", {"id": DEVICE, "status": "accepted"})
    out = subprocess.run(
        ["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", f"hexkey:{SECRET}"],
        input=body,
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert out.split()[-1] == hooks.signature(SECRET, body)
    assert hooks.signature_ok(SECRET, body, out.split()[-1].upper())


def test_it_refuses_wrong_missing_and_garbage_signatures() -> None:
    body = mender_event("device-decommissioned", {"id": DEVICE})
    good = hooks.signature(SECRET, body)
    assert not hooks.signature_ok(SECRET, body + b" ", good)
    assert not hooks.signature_ok("00" * 16, body, good)
    assert not hooks.signature_ok(SECRET, body, None)
    assert not hooks.signature_ok(SECRET, body, "")
    assert not hooks.signature_ok(SECRET, body, "é" * 64)
    # The text of the hex secret is not the key: `openssl dgst -hmac "$SECRET"` signs wrongly.
    text_keyed = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", SECRET], input=body, capture_output=True, check=True
    ).stdout.decode()
    assert not hooks.signature_ok(SECRET, body, text_keyed.split()[-1])


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("device-provisioned", PROVISIONED),
        ("device-status-changed", {"id": DEVICE, "status": "rejected"}),
        ("device-decommissioned", {"id": DEVICE}),
        (
            "device-inventory-changed",
            {"device_id": DEVICE, "tenant_id": "", "inventory": {"device_type": "gateway"}},
        ),
    ],
)
def test_it_parses_each_mender_event(kind: str, data: dict[str, object]) -> None:
    event = hooks.parse_event(mender_event(kind, data))
    assert (event.type, event.device_id) == (kind, DEVICE)
    assert event.time == datetime(2026, 11, 29, 20, 0, 1, 123456, tzinfo=UTC)


def test_it_takes_inventory_changed_as_menders_device_inventory_changed() -> None:
    event = hooks.parse_event(mender_event("inventory-changed", {"device_id": DEVICE, "inventory": {}}))
    assert event.type == "device-inventory-changed"


def test_it_reports_every_problem_at_once_naming_the_field() -> None:
    body = json.dumps({"id": "", "type": "device-exploded", "time": "yesterday", "data": []}).encode()
    with pytest.raises(EventError) as caught:
        hooks.parse_event(body)
    assert [p.field for p in caught.value.problems] == ["id", "type", "time", "data"]
    assert "device-provisioned" in str(caught.value)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "data"),
        ({"bundle_id": 3, "bundle_url": "https://x/b.tar"}, "data"),
        ({"bundle_id": "3"}, "data.bundle_id"),
        ({"bundle_id": True}, "data.bundle_id"),
        ({"artifact_url": ""}, "data.artifact_url"),
    ],
)
def test_it_needs_exactly_one_source_for_a_deployment(data: dict[str, object], field: str) -> None:
    with pytest.raises(EventError) as caught:
        hooks.parse_event(mender_event("deployment-requested", data))
    assert [p.field for p in caught.value.problems] == [field]


def test_it_refuses_naive_times_and_non_json() -> None:
    with pytest.raises(EventError, match="time: must be an RFC 3339"):
        hooks.parse_event(mender_event("device-decommissioned", {"id": DEVICE}, when="2026-11-29T20:00:00"))
    with pytest.raises(EventError, match=r"\(body\): not JSON"):
        hooks.parse_event(b"\xff{")


@pytest.mark.parametrize(
    ("offset", "ok"),
    [(timedelta(minutes=4, seconds=59), True), (timedelta(minutes=5, seconds=1), False)],
)
def test_it_keeps_a_five_minute_window_both_ways(offset: timedelta, ok: bool) -> None:
    for sign in (1, -1):
        when = (NOW + sign * offset).isoformat()
        event = hooks.parse_event(mender_event("device-decommissioned", {"id": DEVICE}, when=when))
        problem = hooks.time_problem(event, NOW)
        assert (problem is None) == ok, problem
        if not ok:
            assert f"is 5 min 1 s {'ahead of' if sign > 0 else 'behind'} this server" in (problem or "")


def test_it_recognises_its_own_device_by_id_or_identity() -> None:
    provisioned = hooks.parse_event(mender_event("device-provisioned", PROVISIONED))
    other = hooks.parse_event(mender_event("device-decommissioned", {"id": "someone-else"}))
    assert OwnDevice(device_id=DEVICE).matches(provisioned)
    assert OwnDevice(identity={"mac": "02:42:ac:11:00:02"}).matches(provisioned)
    assert not OwnDevice(identity={"mac": "02:42:ac:11:00:03"}).matches(provisioned)
    assert not OwnDevice(device_id=DEVICE).matches(other)
    assert not OwnDevice().matches(provisioned)


def test_it_reads_the_device_id_from_a_mender_device_token() -> None:
    def part(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    token = f"{part({'alg': 'RS256'})}.{part({'sub': DEVICE, 'mender.device': True})}.c2ln"
    assert hooks.jwt_subject(token) == DEVICE
    assert hooks.jwt_subject("not-a-token") == ""
    assert hooks.jwt_subject("a.!!!.c") == ""


def test_it_writes_the_secret_0600_and_reads_it_back(tmp_path: Path) -> None:
    path = tmp_path / "store" / "hook-secret"
    hooks.secret_write(path, SECRET.upper() + "\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert hooks.secret_read(path) == SECRET
    assert hooks.secret_read(tmp_path / "absent") is None
    path.chmod(0o644)
    with pytest.raises(SecretError, match="mode 0644 lets others read it"):
        hooks.secret_read(path)


@pytest.mark.parametrize("bad", ["not hex at all", "ab" * 15, "ab" * 33, "abc" * 11])
def test_it_refuses_a_secret_mender_would_not_accept(bad: str, tmp_path: Path) -> None:
    with pytest.raises(SecretError):
        hooks.secret_write(tmp_path / "hook-secret", bad)
    assert not (tmp_path / "hook-secret").exists()


def test_it_generates_secrets_mender_accepts() -> None:
    one, two = hooks.secret_generate(), hooks.secret_generate()
    assert one != two
    assert hooks.secret_check(one) == one and len(one) == 64
