# One record of "who" (issue 24): the `actor` JSON (`updates.actors.Actor.as_json()`) replaces
# `created_by`, `actor_kind`/`actor_name` and `forced_by` on deployments and bundles, the
# requests' `actor_kind`/`actor_name`, and the bundles' `deleted_by` label. The integrator
# renumbers/chains this at merge.

from django.db import migrations, models

KINDS = ("user", "token", "webhook", "cli", "system")


def _from_label(label):
    """An actor from a `created_by`/`deleted_by` string: "cli", "user:x", "token:u/n",
    "webhook:<event id>"; anything else (old test data such as "api:alice") is a user name."""
    if not label or label == "cli":
        return {"kind": "cli", "name": "cli"}
    kind, sep, name = label.partition(":")
    if sep and kind in KINDS:
        return {"kind": kind, "name": name}
    return {"kind": "user", "name": name if sep else label}


def _row_actor(row):
    """The columns agreed when the row was written by 0004's code; `created_by` alone is what
    rows older than 0004 have (their kind/name hold the defaults "cli"/"cli")."""
    from_columns = {"kind": row.actor_kind, "name": row.actor_name}
    by_label = _from_label(row.created_by)
    if row.actor_kind == "cli" and row.actor_name == "cli" and by_label["kind"] != "cli":
        return by_label
    if row.actor_kind not in KINDS:
        return by_label
    return from_columns


def _old_label(actor):
    """The `created_by` string the code before this migration wrote for an actor."""
    if not actor or actor.get("kind") == "cli":
        return "cli"
    return f"{actor['kind']}:{actor['name']}"


def forward(apps, schema_editor):
    Deployment = apps.get_model("updates", "Deployment")
    Bundle = apps.get_model("updates", "Bundle")
    for row in Deployment.objects.all().iterator():
        row.actor = _row_actor(row)
        row.requests = [_request_forward(r) for r in row.requests or []]
        if row.forced_by and row.forced_by not in (row.actor["name"], _old_label(row.actor)):
            # Force is given by who creates the deployment, so the row's actor forced it; a
            # forced_by that says otherwise is kept in the reason rather than lost.
            row.forced_reason = f"{row.forced_reason} (forced by {row.forced_by})"
        row.save(update_fields=["actor", "requests", "forced_reason"])
    for row in Bundle.objects.all().iterator():
        row.actor = _row_actor(row)
        row.deleted_by = _from_label(row.deleted_by_label) if row.deleted_by_label else None
        row.save(update_fields=["actor", "deleted_by"])


def _request_forward(entry):
    kind, name = entry.get("actor_kind"), entry.get("actor_name")
    rest = {k: v for k, v in entry.items() if k not in ("actor_kind", "actor_name")}
    return {**rest, "actor": {"kind": kind if kind in KINDS else "user", "name": name or ""}}


def _request_back(entry):
    actor = entry.get("actor") or {}
    rest = {k: v for k, v in entry.items() if k != "actor"}
    return {**rest, "actor_kind": actor.get("kind", ""), "actor_name": actor.get("name", "")}


def backward(apps, schema_editor):
    Deployment = apps.get_model("updates", "Deployment")
    Bundle = apps.get_model("updates", "Bundle")
    for row in Deployment.objects.all().iterator():
        actor = row.actor or {"kind": "cli", "name": "cli"}
        row.created_by = _old_label(actor)
        row.actor_kind, row.actor_name = actor["kind"], actor["name"]
        # The CLI recorded the OS user as forced_by, the workers the created_by label.
        by = actor["name"] if actor["kind"] == "cli" else _old_label(actor)
        row.forced_by = by if row.forced_reason else ""
        row.requests = [_request_back(r) for r in row.requests or []]
        row.save(
            update_fields=["created_by", "actor_kind", "actor_name", "forced_by", "requests"]
        )
    for row in Bundle.objects.all().iterator():
        actor = row.actor or {"kind": "cli", "name": "cli"}
        row.created_by = _old_label(actor)
        row.actor_kind, row.actor_name = actor["kind"], actor["name"]
        row.deleted_by_label = _old_label(row.deleted_by) if row.deleted_by else ""
        row.save(update_fields=["created_by", "actor_kind", "actor_name", "deleted_by_label"])


class Migration(migrations.Migration):
    dependencies = [
        ("updates", "0009_seal"),
    ]

    operations = [
        migrations.AddField(
            model_name="deployment",
            name="actor",
            field=models.JSONField(default=dict),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="bundle",
            name="actor",
            field=models.JSONField(default=dict),
            preserve_default=False,
        ),
        migrations.RenameField(model_name="bundle", old_name="deleted_by", new_name="deleted_by_label"),
        migrations.AddField(
            model_name="bundle",
            name="deleted_by",
            field=models.JSONField(null=True),
        ),
        migrations.RunPython(forward, backward),
        migrations.RemoveField(model_name="deployment", name="created_by"),
        migrations.RemoveField(model_name="deployment", name="actor_kind"),
        migrations.RemoveField(model_name="deployment", name="actor_name"),
        migrations.RemoveField(model_name="deployment", name="forced_by"),
        migrations.RemoveField(model_name="bundle", name="created_by"),
        migrations.RemoveField(model_name="bundle", name="actor_kind"),
        migrations.RemoveField(model_name="bundle", name="actor_name"),
        migrations.RemoveField(model_name="bundle", name="deleted_by_label"),
    ]
