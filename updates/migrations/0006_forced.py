# Deployments forced past the declared constraints (issue 13): who and why; the constraints file kept with the run.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('updates', '0005_webhooks'),
    ]

    operations = [
        migrations.AddField(
            model_name='deployment',
            name='constraints_file',
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='deployment',
            name='forced_by',
            field=models.CharField(blank=True, max_length=150),
        ),
        migrations.AddField(
            model_name='deployment',
            name='forced_reason',
            field=models.TextField(blank=True),
        ),
    ]
