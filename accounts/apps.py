from __future__ import annotations

from typing import Any

from django.apps import AppConfig

from updates.actors import Actor


class AccountsConfig(AppConfig):
    name = "accounts"
    label = "accounts"  # the tables and migrations keep their names
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        user_logged_in.connect(_login_journal, dispatch_uid="accounts.login_journal")


def _login_journal(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    from accounts.services import login_record  # models load after this module: Django's order

    login_record(actor=Actor("user", user.get_username()), request=request)
