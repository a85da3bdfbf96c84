"""Template context every page needs: the signed-in user's role decides what is shown."""

from __future__ import annotations

from django.http import HttpRequest

from accounts.models import Role
from accounts.selectors import role_of
from updates.web.access import has_role


def role(request: HttpRequest) -> dict[str, object]:
    user = request.user
    return {
        "role": role_of(user),
        "can_operate": has_role(user, Role.OPERATOR),
        "is_admin": has_role(user, Role.ADMIN),
    }
