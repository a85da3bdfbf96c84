"""Write the OpenAPI document: `.venv/bin/python -m orchestrator_site.openapi_export docs/openapi.json`
(tests/api/test_contract.py fails when the checked-in copy drifts)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import django

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
    django.setup()
    from orchestrator_site.api import openapi_document

    Path(sys.argv[1]).write_text(openapi_document())
