#!/usr/bin/env python3
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    if sys.argv[1:2] == ["orchestrator"]:
        # A few orchestrator commands need only the engine: served before Django loads.
        from updates.launch import serve

        code = serve(sys.argv[2:])
        if code is not None:
            sys.exit(code)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
    if sys.argv[1:2] == ["orchestrator"]:
        _settings_or_exit()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


def _settings_or_exit() -> None:
    """A bad environment variable (ORCH_LOG_FORMAT=xml, DEBUG=yes) is invalid input: one line
    naming it and exit 2, as the CLI's contract says (docs/cli.md §8), not Django's traceback."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018 (loads the settings module)
    except ImproperlyConfigured as exc:
        print(f"mender-orchestrator: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
