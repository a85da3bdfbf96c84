"""Loaded as a pytest plugin (`-p tests.isolated_env` in pyproject's addopts), so it runs before
pytest-django imports the settings, which read the data store's path from the environment and
write into it at once (the secret key). A conftest is too late: pytest loads conftests after
pytest-django set Django up (pytest 9: `Config.pytest_load_initial_conftests` is `trylast`).

Every test run gets its own data store, whatever the caller's environment says: a shell that
sourced demo/env.sh (or an installed appliance's profile) must not lead the tests into its data
store (secret key, hook secret, uploads, bundles). Subprocesses inherit it.

The other paths demo/env.sh exports go back to their defaults, as on CI; tests that need a demo
system build their own (tests/integration/conftest.py). DATABASE_URL is kept on purpose: .ci/run
sets it for the PostgreSQL pass; pytest-django then creates its own test_<name> database on that
server and the CLI-driven demo systems get databases of their own (tests/integration/conftest.py).
"""

from __future__ import annotations

import os
import tempfile

MARKER = "ORCH_TESTS_OWN_STORE"  # set here only: the xdist workers of one run share its store

if os.getenv("PYTEST_XDIST_WORKER") and os.getenv(MARKER):
    TEST_STORE = os.environ[MARKER]
else:
    TEST_STORE = tempfile.mkdtemp(prefix="orch-test-store-")
os.environ[MARKER] = TEST_STORE
os.environ["MENDER_ORCHESTRATOR_DATASTORE_DIR"] = TEST_STORE
for _name in (
    "MENDER_ORCHESTRATOR_TOPOLOGY_DIR",  # default: the data store above
    "MENDER_ORCHESTRATOR_TOPOLOGY_COMPONENTS_FILE",
    "MENDER_ORCHESTRATOR_DATA_DIR",
    "MENDER_ORCHESTRATOR_CONF_DIR",
    "ORCH_REBOOT_COMMAND",
    "ORCH_REBOOT_WAIT_SECONDS",
    "DEMO_ROOT",
):
    os.environ.pop(_name, None)
