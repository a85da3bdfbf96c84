"""Migration 0010_actor on rows written before it: every old form of "who" (`created_by`
strings, `actor_kind`/`actor_name`, `forced_by`, the requests' kind/name, `deleted_by`) becomes
the one `actor` JSON with its meaning kept, and the reverse gives the old columns back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("updates", "0009_seal")]
AFTER = [("updates", "0010_actor")]


def _migrate(target: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.migrate(target)
    executor.loader.build_graph()
    return executor.loader.project_state(target).apps


@pytest.fixture
def old_schema(transactional_db: None) -> Iterator[Any]:
    """The database at 0007, with the rest of the suite's schema given back afterwards."""
    apps = _migrate(BEFORE)
    try:
        yield apps
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def _old_rows(apps: Any) -> dict[str, int]:
    Manifest = apps.get_model("updates", "Manifest")
    Deployment = apps.get_model("updates", "Deployment")
    Bundle = apps.get_model("updates", "Bundle")
    manifest = Manifest.objects.create(name="m", form="current", sha256="0" * 64, raw="", source_path="m")

    def deployment(**fields: Any) -> int:
        row = Deployment.objects.create(manifest=manifest, status="succeeded", slot=None, **fields)
        return int(row.pk)

    return {
        # The CLI: created_by "cli", the OS user in actor_name, forced_by the OS user too.
        "cli": deployment(
            created_by="cli", actor_kind="cli", actor_name="root", forced_by="root", forced_reason="bench"
        ),
        # A web user who forced it, and a token that asked for a resume later.
        "user": deployment(
            created_by="user:alice",
            actor_kind="user",
            actor_name="alice",
            forced_by="user:alice",
            forced_reason="hotfix",
            requests=[{"action": "resume", "actor_kind": "token", "actor_name": "bob/ci", "at": "t"}],
        ),
        # A row older than 0004: only created_by says who (kind/name hold their defaults).
        "webhook": deployment(created_by="webhook:evt-9"),
        # forced_by that disagrees with who created it: kept in the reason, not lost.
        "odd": deployment(
            created_by="token:bob/ci",
            actor_kind="token",
            actor_name="bob/ci",
            forced_by="carol",
            forced_reason="x",
        ),
        "bundle": int(
            Bundle.objects.create(
                status="deleted",
                created_by="user:alice",
                actor_kind="user",
                actor_name="alice",
                deleted_by="token:bob/ci",
            ).pk
        ),
        "bundle_cli": int(Bundle.objects.create(status="accepted").pk),
    }


def test_it_turns_every_old_form_of_who_into_the_actor_and_back(old_schema: Any) -> None:
    ids = _old_rows(old_schema)

    apps = _migrate(AFTER)
    Deployment, Bundle = apps.get_model("updates", "Deployment"), apps.get_model("updates", "Bundle")
    d = {name: Deployment.objects.get(pk=pk) for name, pk in ids.items() if not name.startswith("bundle")}
    assert d["cli"].actor == {"kind": "cli", "name": "root"}
    assert d["cli"].forced_reason == "bench"
    assert d["user"].actor == {"kind": "user", "name": "alice"}
    assert d["user"].requests == [
        {"action": "resume", "actor": {"kind": "token", "name": "bob/ci"}, "at": "t"}
    ]
    assert d["webhook"].actor == {"kind": "webhook", "name": "evt-9"}
    assert d["odd"].actor == {"kind": "token", "name": "bob/ci"}
    assert d["odd"].forced_reason == "x (forced by carol)"
    bundle, bundle_cli = Bundle.objects.get(pk=ids["bundle"]), Bundle.objects.get(pk=ids["bundle_cli"])
    assert (bundle.actor, bundle.deleted_by) == (
        {"kind": "user", "name": "alice"},
        {"kind": "token", "name": "bob/ci"},
    )
    assert (bundle_cli.actor, bundle_cli.deleted_by) == ({"kind": "cli", "name": "cli"}, None)

    apps = _migrate(BEFORE)
    Deployment, Bundle = apps.get_model("updates", "Deployment"), apps.get_model("updates", "Bundle")
    back = {name: Deployment.objects.get(pk=pk) for name, pk in ids.items() if not name.startswith("bundle")}
    cols = ("created_by", "actor_kind", "actor_name", "forced_by")
    assert [getattr(back["cli"], c) for c in cols] == ["cli", "cli", "root", "root"]
    assert [getattr(back["user"], c) for c in cols] == ["user:alice", "user", "alice", "user:alice"]
    assert back["user"].requests == [
        {"action": "resume", "at": "t", "actor_kind": "token", "actor_name": "bob/ci"}
    ]
    assert [getattr(back["webhook"], c) for c in cols] == ["webhook:evt-9", "webhook", "evt-9", ""]
    bundle = Bundle.objects.get(pk=ids["bundle"])
    assert (bundle.created_by, bundle.actor_kind, bundle.deleted_by) == ("user:alice", "user", "token:bob/ci")
