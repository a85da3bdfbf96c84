"""Django's database sessions, read with a query compiled once per process.

Every signed-in request loads its session row; the ORM spent several times the query's own
time building it. The row is still read from the database on every request (a signed-out or
expired session counts at once in every process); only its SQL is kept. Writes (the idle
stamp once a minute, sign-in, sign-out) are Django's own.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends.db import SessionStore as DatabaseStore
from django.contrib.sessions.models import Session
from django.db.models import QuerySet
from django.utils import timezone

from updates.selectors.prepared import prepared


class SessionStore(DatabaseStore):
    def load(self) -> dict[str, Any]:
        key = self.session_key
        found = prepared("accounts.session", _session_row, (key,)) if key is not None else []
        # Expired as Django's query has it (expire_date > now), compared here: the time is not
        # a parameter a prepared read can take.
        if not found or found[0][1] <= timezone.now():
            self._session_key = None
            return {}
        data: dict[str, Any] = self.decode(found[0][0])
        return data


def _session_row(key: str) -> QuerySet[Session, Any]:
    return Session.objects.filter(session_key=key).values_list("session_data", "expire_date")
