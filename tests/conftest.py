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


# These files are about the process itself (a kill, a crash, the update module calling us, a
# leftover interface call outliving its caller): their demo systems run every command as a
# process, never in-process (tests/integration/conftest.py).
CLI_SUBPROCESS_FILES = {
    "tests/integration/test_crash_matrix.py",
    "tests/integration/test_crash_recovery.py",
    "tests/integration/test_update_module.py",
    "tests/integration/test_resume_interrupted.py",
}


# The fast lane (`bin/test --fast`, i.e. `-m "not slow"`): unit tests and in-process service,
# API and page tests. Marked `slow` here, by where they live or what they start: a browser, an
# install into a temp root, Celery workers, gunicorn, the demo system's interface executables,
# the command line as a process.
SLOW_DIRS = ("tests/browser/", "tests/deploy/", "tests/worker/", "tests/integration/")
SLOW_FILES = {
    "tests/test_cli_basics.py",
    "tests/test_cli_startup.py",
    "tests/test_cli_artifact.py",
    "tests/test_gunicorn_logs.py",
    "tests/hooks/test_hook_secret_cli.py",
    "tests/security/test_live_server.py",
}
SLOW_FIXTURES = {"appliance", "web", "demo", "web_demo"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        rel = Path(str(item.path)).relative_to(root).as_posix()
        if rel in CLI_SUBPROCESS_FILES:
            item.add_marker(pytest.mark.cli_subprocess)
        fixtures = set(getattr(item, "fixturenames", ()))
        if rel.startswith(SLOW_DIRS) or rel in SLOW_FILES or fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
