# Deployment options become columns; the in-progress slot gets a check constraint (issue 12).

from django.db import migrations, models


def options_to_columns(apps, schema_editor):
    Deployment = apps.get_model("updates", "Deployment")
    for row in Deployment.objects.exclude(options={}).only("pk", "options"):
        options = row.options or {}
        Deployment.objects.filter(pk=row.pk).update(
            stop_before=list(options.get("stop_before", [])),
            exit_on_reboot=bool(options.get("exit_on_reboot")),
        )


def columns_to_options(apps, schema_editor):
    Deployment = apps.get_model("updates", "Deployment")
    for row in Deployment.objects.only("pk", "stop_before", "exit_on_reboot"):
        Deployment.objects.filter(pk=row.pk).update(
            options={"stop_before": row.stop_before, "exit_on_reboot": row.exit_on_reboot}
        )


class Migration(migrations.Migration):
    dependencies = [
        ("updates", "0002_bundles_store"),
    ]

    operations = [
        migrations.AddField(
            model_name="deployment",
            name="exit_on_reboot",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="deployment",
            name="stop_before",
            field=models.JSONField(default=list),
        ),
        migrations.RunPython(options_to_columns, columns_to_options),
        migrations.RemoveField(
            model_name="deployment",
            name="options",
        ),
        migrations.AddConstraint(
            model_name="deployment",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("slot", 1), ("slot__isnull", False), ("status__in", ["queued", "running", "stopped", "reboot_required"])),
                    models.Q(
                        ("slot__isnull", True),
                        ("status__in", ["succeeded", "rolled_back", "inconsistent", "rejected"]),
                    ),
                    _connector="OR",
                ),
                name="deployment_slot_only_in_progress",
            ),
        ),
    ]
