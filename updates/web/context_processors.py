"""Template context every page needs: the signed-in user's role decides what is shown, and the
page frame (`base.html`: the menu, the scripts and styles) whose links never change while a
process runs."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest
from django.templatetags.static import static
from django.urls import NoReverseMatch, get_script_prefix, reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from accounts.models import Role
from accounts.selectors import role_of


@dataclass(frozen=True)
class Frame:
    """The links of `base.html`, escaped for an attribute, resolved once per process (per script
    prefix): each `{% url %}` and `{% static %}` cost the page 0.05-0.1 ms on every request."""

    home: str
    logout: str
    tokens: str  # "" when the URLconf has no tokens page (as `{% url ... as %}` gave)
    page_js: str
    app_css: str
    htmx_js: str
    confirm_js: str
    favicon: str
    menu: tuple[tuple[str, str], ...]  # (link, label) of the main menu, for every role
    admin: str


_frames: dict[str, Frame] = {}


@receiver(setting_changed)
def _forget_frames(**kwargs: object) -> None:
    # Tests change the static files' root or the URLs; a running server never does.
    _frames.clear()


def _link(name: str) -> str:
    try:
        return escape(reverse(name))
    except NoReverseMatch:
        return ""


def _frame() -> Frame:
    prefix = get_script_prefix()
    frame = _frames.get(prefix)
    if frame is None:
        frame = _frames[prefix] = Frame(
            home=_link("system"),
            logout=_link("logout"),
            tokens=_link("tokens"),
            page_js=escape(static("js/page.js")),
            app_css=escape(static("css/app.css")),
            htmx_js=escape(static("vendor/htmx/htmx-2.0.11.min.js")),
            confirm_js=escape(static("js/confirm.js")),
            favicon=escape(static("favicon.ico")),
            menu=tuple(
                (_link(name), label)
                for name, label in (
                    ("system", "System"),
                    ("bundles", "Bundles"),
                    ("history", "History"),
                    ("audit", "Audit"),
                )
            ),
            admin=_link("admin-home"),
        )
    return frame


_CURRENT = 'aria-current="page"'


def _menu(frame: Frame, path: str, role: Role | None) -> SafeString:
    """The main menu's items, the current page's marked (the markup `base.html` had)."""
    items = [*frame.menu, (frame.admin, "Admin")] if role is Role.ADMIN else frame.menu
    current = escape(path)  # compared as the template compared them: escaped link to raw path
    return mark_safe(  # the links were escaped when the frame was made; labels are ours
        "\n        ".join(
            f'<li><a href="{link}" {_CURRENT if link == current else ""}>{label}</a></li>'
            for link, label in items
        )
    )


def role(request: HttpRequest) -> dict[str, object]:
    have = role_of(request.user)  # read once per request (memoised on the user object)
    frame = _frame()
    return {
        "role": have,
        "can_operate": have is not None and have.rank >= Role.OPERATOR.rank,
        "is_admin": have is Role.ADMIN,
        "frame": frame,
        "menu": _menu(frame, request.path, have),
    }
