"""Every route x every persona -> the expected status, over HTTP against gunicorn.

Anonymous, expired and revoked tokens get 401 everywhere but health; a viewer reads and gets
403 on writes; operator and admin get the route's own answer (for the writes here: the answer to
a request about things that do not exist, which passes the permission check first)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Personas, Web

VIEWER, OPERATOR, NOBODY = "viewer", "operator", None
# (method, path, JSON body, minimum role, status once allowed)
ROUTES: list[tuple[str, str, Any, str | None, int]] = [
    # No worker runs beside this server, and health says so (test_live sees 200 with one).
    ("GET", "/health", None, NOBODY, 503),
    ("GET", "/openapi.json", None, VIEWER, 200),
    ("GET", "/docs", None, VIEWER, 200),
    ("GET", "/system", None, VIEWER, 200),
    ("POST", "/system/refresh", None, OPERATOR, 202),
    ("POST", "/system/reconcile", None, OPERATOR, 409),  # no active manifest yet
    ("GET", "/components", None, VIEWER, 200),
    ("POST", "/bundles", None, OPERATOR, 422),  # no file
    ("GET", "/bundles", None, VIEWER, 200),
    ("GET", "/bundles/999", None, VIEWER, 404),
    ("DELETE", "/bundles/999", None, OPERATOR, 404),
    ("POST", "/plan", {"manifest": "kind: manifest\n"}, OPERATOR, 422),
    ("POST", "/deployments", {"bundle_id": 999}, OPERATOR, 404),
    ("GET", "/deployments", None, VIEWER, 200),
    ("GET", "/deployments?status=succeeded&page=2", None, VIEWER, 200),
    ("GET", "/deployments/999", None, VIEWER, 404),
    ("GET", "/deployments/999/steps/1/log", None, VIEWER, 404),
    ("GET", "/deployments/999/events", None, VIEWER, 404),
    ("POST", "/deployments/999/resume", {}, OPERATOR, 409),
    ("POST", "/deployments/999/rollback", None, OPERATOR, 409),
    ("POST", "/deployments/999/cancel", None, OPERATOR, 404),
    ("POST", "/deployments/999/approve", {}, OPERATOR, 404),
    ("POST", "/deployments/999/reject", {"reason": "no"}, OPERATOR, 404),
    ("GET", "/audit", None, VIEWER, 200),
    ("GET", "/audit?format=csv", None, VIEWER, 200),
    ("GET", "/audit/verify", None, VIEWER, 200),
    # Signed by the Mender webhook secret, not by user or token: unsigned is 401 for everyone.
    ("POST", "/hooks/mender", {"id": "e1", "type": "device-provisioned", "data": {}}, NOBODY, 401),
]
RANK = {"viewer": 0, "operator": 1, "admin": 2}


def expected(persona: str, role: str | None, allowed: int) -> int:
    if role is None:
        return allowed
    if persona in ("anonymous", "expired", "revoked"):
        return 401
    return allowed if RANK[persona] >= RANK[role] else 403


def test_it_answers_every_route_for_every_persona_as_the_role_allows(web: Web, personas: Personas) -> None:
    wrong = []
    for method, path, body, role, allowed in ROUTES:
        for persona, token in personas.tokens.items():
            answer = web.request(method, path, token=token, body=body)
            want = expected(persona, role, allowed)
            if answer.status != want:
                wrong.append(
                    f"{method} {path} as {persona}: {answer.status}, expected {want}: {answer.body[:200]!r}"
                )
            elif answer.status >= 400 and path != "/health":  # health answers its own body
                assert set(answer.json()["error"]) == {"code", "message", "details"}, (method, path, persona)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("persona", ["viewer", "operator"])
def test_it_lists_routes_the_matrix_covers(web: Web, personas: Personas, persona: str) -> None:
    """A new route must join the matrix: every operation of the OpenAPI document is in ROUTES."""
    document = web.request("GET", "/openapi.json", token=personas.tokens[persona]).json()
    operations = {
        (method.upper(), path.removeprefix("/api/v1"))
        for path, item in document["paths"].items()
        for method in item
    }
    covered = {(m, _template(p)) for m, p, *_ in ROUTES}
    assert operations - covered == set()


def _template(path: str) -> str:
    path = path.split("?")[0]
    for name, value in (("bundle_id", "/bundles/999"), ("deployment_id", "/deployments/999")):
        path = path.replace(value, value.replace("999", "{" + name + "}"))
    return path.replace("/steps/1/", "/steps/{step_id}/")
