"""Thin edge: hands argv to the orchestrator CLI and exits with its code."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from updates.cli import main


class Command(BaseCommand):
    help = "Update orchestrator (see `orchestrator --help`)"

    def run_from_argv(self, argv: list[str]) -> None:
        sys.exit(main(argv[2:]))
