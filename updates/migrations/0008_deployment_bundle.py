# The lead renumbers/chains this at merge (issue 24).

from django.db import migrations, models
import django.db.models.deletion


def bundle_fill(apps, schema_editor):
    """Once, for the deployments recorded before the key existed: the bundle whose directory holds
    the manifest's source path (the path-prefix rule the code used until now)."""
    Bundle = apps.get_model("updates", "Bundle")
    Deployment = apps.get_model("updates", "Deployment")
    directories = {
        b.directory.rstrip("/") + "/": b.pk for b in Bundle.objects.exclude(directory="").only("pk", "directory")
    }
    for deployment in Deployment.objects.select_related("manifest").only("pk", "manifest__source_path"):
        source = deployment.manifest.source_path
        bundle_id = next((pk for prefix, pk in directories.items() if source.startswith(prefix)), None)
        if bundle_id is not None:
            Deployment.objects.filter(pk=deployment.pk).update(bundle_id=bundle_id)


class Migration(migrations.Migration):

    dependencies = [
        ("updates", "0007_journal"),
    ]

    operations = [
        migrations.AddField(
            model_name="deployment",
            name="bundle",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="deployments",
                to="updates.bundle",
            ),
        ),
        migrations.RunPython(bundle_fill, migrations.RunPython.noop),
    ]
