from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections

from tests.isolated_env import TEST_STORE

# The run's own data store (tests/isolated_env.py, loaded before Django read its settings).
if Path(TEST_STORE).resolve() != settings.DATASTORE_DIR:
    raise pytest.UsageError(
        f"the settings use the data store {settings.DATASTORE_DIR}, not this run's own {TEST_STORE}: "
        "run pytest with the project's configuration (pyproject.toml: -p tests.isolated_env)"
    )


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The SQLite test database goes to this run's temp dir (a file: the worker shares it)."""
    db = connections["default"].settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db["TEST"]["NAME"] = str(tmp_path_factory.mktemp("test-db") / "test.sqlite3")
