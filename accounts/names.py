"""What a user name and a token name may be (docs/security.md §5).

Both end up in actor labels (`user:alice`, `token:alice/ci`), log lines, the journal and pages:
a `/` in either would make `alice/ci` ambiguous, and markup or control characters have no
business in a label. So: ASCII letters and digits, and a few separators, starting with a letter
or a digit. Names stored before this rule keep working; only new ones are checked.
"""

from __future__ import annotations

import re

USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,149}")
TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
USER_RULE = "1 to 150 ASCII letters, digits and . _ @ + -, starting with a letter or digit"
TOKEN_RULE = "1 to 100 ASCII letters, digits and . _ -, starting with a letter or digit"


def user_name_problem(name: str) -> str | None:
    return None if USER_NAME.fullmatch(name) else f"a user name is {USER_RULE}"


def token_name_problem(name: str) -> str | None:
    return None if TOKEN_NAME.fullmatch(name) else f"a token name is {TOKEN_RULE}"
