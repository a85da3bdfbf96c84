from __future__ import annotations

from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created

from updates.engine.fsutil import database_files_protect


class UpdatesConfig(AppConfig):
    name = "updates"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        connection_created.connect(_share_sqlite_files, dispatch_uid="updates.share_sqlite_files")


def _share_sqlite_files(sender: object, connection: Any, **kwargs: object) -> None:
    """SQLite creates its database 0644 less the umask: readable by every local user under a
    usual umask 022 (password and token hashes), and 0640 under the services' umask 0007, so a
    database the root worker (or `migrate`) made would be read-only to the web server. So the
    database and its -wal/-shm (which SQLite creates with the database's mode) are made 0600,
    or 0660 in the shared data store of a production install."""
    if connection.vendor == "sqlite":
        name = Path(str(connection.settings_dict["NAME"]))
        database_files_protect([name, name.with_name(f"{name.name}-wal"), name.with_name(f"{name.name}-shm")])
