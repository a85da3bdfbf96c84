"""Browser login (the session the API also accepts): Django's views, with failed logins rate
limited per (client address, account)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from accounts import selectors, services
from accounts.addresses import client_address


class RateLimitedAuthenticationForm(AuthenticationForm):
    def clean(self) -> dict[str, Any]:
        address = client_address(self.request) if self.request else "unknown"
        account = str(self.cleaned_data.get("username") or "")
        # Per (address, account): a stranger failing the admin's password from elsewhere, or
        # another account's failures from here, never refuse the admin's right password.
        if selectors.login_blocked(address=address, account=account):
            raise ValidationError(
                "Too many failed attempts for this account from this address; try again later.",
                code="rate_limited",
            )
        try:
            return super().clean()
        except ValidationError:
            services.auth_failure_record(address=address, kind="login", account=account)
            raise


class LoginView(auth_views.LoginView):
    form_class = RateLimitedAuthenticationForm
    template_name = "registration/login.html"


class LogoutView(auth_views.LogoutView):
    pass
