import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("updates", "0004_actors"),
    ]

    operations = [
        migrations.CreateModel(
            name="WebhookEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("event_id", models.CharField(max_length=100, unique=True)),
                ("type", models.CharField(max_length=40)),
                ("event_time", models.DateTimeField()),
                ("data", models.JSONField(default=dict)),
                ("device_id", models.CharField(blank=True, max_length=200)),
                ("own_device", models.BooleanField(default=False)),
                ("remote_addr", models.CharField(blank=True, max_length=100)),
                ("body_sha256", models.CharField(max_length=64)),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("processing", "Processing"),
                            ("recorded", "Recorded"),
                            ("refresh", "Refresh"),
                            ("deployment", "Deployment"),
                            ("refused", "Refused"),
                        ],
                        default="processing",
                        max_length=20,
                    ),
                ),
                ("answer_status", models.PositiveSmallIntegerField(null=True)),
                ("answer_body", models.TextField(blank=True)),
                ("replays", models.PositiveIntegerField(default=0)),
                ("received_at", models.DateTimeField(auto_now_add=True)),
                (
                    "bundle",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="updates.bundle",
                    ),
                ),
                (
                    "deployment",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="updates.deployment",
                    ),
                ),
            ],
            options={
                "ordering": ["-id"],
            },
        ),
    ]
