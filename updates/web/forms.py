"""Forms of the web UI: they parse and validate input so errors show next to their field."""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.utils.datastructures import MultiValueDict

from accounts.models import Role
from accounts.names import token_name_problem, user_name_problem
from updates.models import Deployment
from updates.statuses import status_label

ROLE_CHOICES = [(r.value, r.value) for r in Role]


class RoleField(forms.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=ROLE_CHOICES, **kwargs)

    def clean(self, value: Any) -> Role:
        return Role(super().clean(value))


class UploadForm(forms.Form):
    file = forms.FileField(label="Bundle file", help_text=".tar, .tar.gz, manifest .mender or manifest .yaml")

    @classmethod
    def refused(cls, reason: str) -> UploadForm:
        """A bound form whose file field carries `reason` (an upload refused while it arrived)."""
        form = cls(data={}, files=MultiValueDict())
        form.full_clean()
        form.errors["file"] = form.error_class([reason])
        return form


class DeployForm(forms.Form):
    confirm = forms.BooleanField(
        label="I have read the plan: deploy it now", error_messages={"required": "Tick the box to confirm."}
    )


FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)


class PeriodForm(forms.Form):
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for key in ("since", "until"):
            day = data.get(key)
            if day is not None and not FIRST_DAY <= day <= LAST_DAY:
                # A day's bounds are computed in the server's time zone: date.max + 1 overflows.
                self.add_error(key, f"Choose a day between {FIRST_DAY} and {LAST_DAY}.")
                data.pop(key, None)
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "The end of the period is before its start.")
        return data


class HistoryFilterForm(PeriodForm):
    status = forms.ChoiceField(
        required=False,
        choices=[("", "any outcome"), *((v, status_label(v)) for v in Deployment.Status.values)],
        label="Outcome",
    )
    manifest = forms.CharField(required=False, max_length=300, label="Manifest name")


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, min_length=8)
    role = RoleField(initial=Role.VIEWER.value)

    def clean_username(self) -> str:
        name: str = self.cleaned_data["username"]
        problem = user_name_problem(name)
        if problem:
            raise forms.ValidationError(f"Not a valid name: {problem}.")
        if User.objects.filter(username=name).exists():
            raise forms.ValidationError("A user with this name exists already.")
        return name


class RoleForm(forms.Form):
    role = RoleField()


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What will use it, e.g. ci-pipeline")
    role = RoleField(help_text="No higher than your own role")
    expires_days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, label="Expires after (days)", help_text="Empty: never"
    )

    def __init__(self, *args: Any, role: Role | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user_role = role or Role.VIEWER
        self.fields["role"].choices = [(r.value, r.value) for r in Role if r.rank <= self.user_role.rank]  # type: ignore[attr-defined]
        self.fields["role"].initial = Role.VIEWER.value

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        problem = token_name_problem(name)
        if problem:
            raise forms.ValidationError(f"Not a valid name: {problem}.")
        return name

    def token_args(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {"name": data["name"], "role": data["role"], "expires_days": data["expires_days"]}
