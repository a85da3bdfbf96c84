"""Template context every page needs: the signed-in user's role decides what is shown."""

from __future__ import annotations

from django.http import HttpRequest

from updates.access import has_role, user_role


def role(request: HttpRequest) -> dict[str, object]:
    user = request.user
    return {"role": user_role(user), "can_operate": has_role(user, "operator"), "is_admin": has_role(user, "admin")}
