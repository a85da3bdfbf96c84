from __future__ import annotations

import os
import tempfile

import pytest
from django.db import connections

# Every test run gets its own data store, so nothing from a developer's demo leaks in.
os.environ.setdefault("MENDER_ORCHESTRATOR_DATASTORE_DIR", tempfile.mkdtemp(prefix="orch-test-store-"))


@pytest.fixture(scope="session")
def django_db_modify_db_settings(
    django_db_modify_db_settings_parallel_suffix: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The SQLite test database goes to this run's temp dir (a file: the worker shares it)."""
    db = connections["default"].settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db["TEST"]["NAME"] = str(tmp_path_factory.mktemp("test-db") / "test.sqlite3")
