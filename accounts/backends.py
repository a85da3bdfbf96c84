"""The signed-in session's user, read with its role in one query (accounts/selectors.py)."""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User

from accounts.selectors import user_with_role


class UserRoleBackend(ModelBackend):
    """Django's password check as it is; only `get_user`, asked on every signed-in request,
    reads the user and its role together (they were two queries, each built by the ORM anew)."""

    def get_user(self, user_id: int) -> User | None:
        user = user_with_role(user_id)
        # An inactive user is signed out on the next request, as ModelBackend does it.
        return user if user is not None and self.user_can_authenticate(user) else None
