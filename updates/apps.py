from django.apps import AppConfig


class UpdatesConfig(AppConfig):
    name = "updates"
    default_auto_field = "django.db.models.BigAutoField"
