from __future__ import annotations

import os
import tempfile

# Every test run gets its own data store, so nothing from a developer's demo leaks in.
os.environ.setdefault("MENDER_ORCHESTRATOR_DATASTORE_DIR", tempfile.mkdtemp(prefix="orch-test-store-"))
