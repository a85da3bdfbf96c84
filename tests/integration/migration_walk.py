"""Walks the schema migrations of a demo appliance's database, one migration per step, and
prints what it saw as JSON (run by tests/integration/test_migrations.py as a subprocess, with the
demo's environment: it never touches the test process's own database).

`python -m tests.integration.migration_walk empty`: every app to zero, then forward one
migration at a time, then backward one at a time.
`... populated`: for each migration of our apps, newest first, unapply it (and what depends on
it) and migrate forward again, recording the appliance's data after each round trip; finally
down to zero and up again, one migration at a time.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

OUR_APPS = ("updates", "devices", "accounts")
Key = tuple[str, str]


def _executor() -> Any:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    return MigrationExecutor(connection)  # fresh each time: it reads what is applied now


def _migrate(target: list[tuple[str, str | None]]) -> list[str]:
    """Migrate to `target`; the `app.name`s applied or unapplied."""
    executor = _executor()
    plan = executor.migration_plan(target)
    executor.migrate(target, plan=plan)
    return [f"{'-' if backwards else '+'}{m.app_label}.{m.name}" for m, backwards in plan]


def _full_plan() -> list[Key]:
    executor = _executor()
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes(), clean_start=True)
    return [(m.app_label, m.name) for m, _ in plan]


def _parent(key: Key) -> tuple[str, str | None]:
    """The target that unapplies `key` alone: its latest predecessor in its app (0007_journal
    names two, 0004 and 0006: migrating to 0004 would unapply 0005 and 0006 too), or zero."""
    graph = _executor().loader.graph
    plan = _full_plan()
    same_app = sorted((p.key for p in graph.node_map[key].parents if p.key[0] == key[0]), key=plan.index)
    return (key[0], same_app[-1][1] if same_app else None)


def _leaves() -> list[tuple[str, str | None]]:
    return list(_executor().loader.graph.leaf_nodes())


def walk_empty() -> dict[str, Any]:
    plan = _full_plan()
    zero = _migrate([(app, None) for app in sorted({app for app, _ in plan})])
    forward = [_migrate([key]) for key in plan]
    backward = [_migrate([_parent(key)]) for key in reversed(plan)]
    return {"plan": [f"{a}.{n}" for a, n in plan], "zero": zero, "forward": forward, "backward": backward}


def data() -> dict[str, Any]:
    """The appliance's data as the services see it, at the latest schema."""
    from accounts.models import ApiToken
    from audit import reports as audit
    from updates import selectors
    from updates.models import Bundle, Deployment, JournalEntry, Step

    pointers = selectors.active_manifests()
    return {
        "deployments": Deployment.objects.count(),
        "steps": Step.objects.count(),
        "statuses": sorted(Deployment.objects.values_list("status", flat=True)),
        "active": pointers.active.name if pointers and pointers.active else None,
        "bundles": Bundle.objects.count(),
        "tokens": ApiToken.objects.count(),
        "journal": JournalEntry.objects.count(),
        "journal_ok": audit.audit_verify().ok,
    }


def walk_populated() -> dict[str, Any]:
    ours = [key for key in _full_plan() if key[0] in OUR_APPS]
    rounds = []
    for key in reversed(ours):
        if _parent(key)[1] is None:
            continue  # an initial migration: its table and rows go with it (the last part below)
        down = _migrate([_parent(key)])
        up = _migrate(_leaves())
        # What `orchestrator migrate` does after applying: a head whose signature a reversed
        # 0009_seal dropped is signed again by journaling the migration (docs/audit.md).
        from audit.services import head_seal_after_upgrade

        head_seal_after_upgrade(migrations=[f"{key[0]}.{key[1]}"])
        rounds.append({"migration": f"{key[0]}.{key[1]}", "down": down, "up": up, "data": data()})
    plan = _full_plan()
    to_zero = [_migrate([_parent(key)]) for key in reversed(plan)]
    back_up = [_migrate([key]) for key in plan]
    return {"rounds": rounds, "zero": to_zero, "up": back_up}


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
    import django

    django.setup()
    if argv == ["data"]:
        result = data()
    elif argv == ["empty"]:
        result = walk_empty()
    else:
        result = walk_populated()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
