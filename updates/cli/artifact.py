"""`orchestrator artifact read|validate|write` (placeholder until the artifact library lands)."""
from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("artifact", help="read, validate and write .mender files")
    parser.set_defaults(handler=lambda args: 2)
