"""Forms of the web UI: they parse and validate input so errors show next to their field."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model

from updates.access import ROLES
from updates.models import Deployment

ROLE_CHOICES = [(r, r) for r in ROLES]


class UploadForm(forms.Form):
    file = forms.FileField(label="Bundle file", help_text=".tar, .tar.gz, manifest .mender or manifest .yaml")

    @classmethod
    def refused(cls, reason: str) -> UploadForm:
        """A bound form whose file field carries `reason` (for uploads refused unread)."""
        form = cls(data={}, files={})
        form.full_clean()
        form.errors["file"] = form.error_class([reason])
        return form


class DeployForm(forms.Form):
    confirm = forms.BooleanField(
        label="I have read the plan: deploy it now", error_messages={"required": "Tick the box to confirm."}
    )


class PeriodForm(forms.Form):
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "The end of the period is before its start.")
        return data


class HistoryFilterForm(PeriodForm):
    status = forms.ChoiceField(
        required=False, choices=[("", "any outcome"), *Deployment.Status.choices], label="Outcome"
    )
    manifest = forms.CharField(required=False, max_length=300, label="Manifest name contains")


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, min_length=8)
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial="viewer")

    def clean_username(self) -> str:
        name: str = self.cleaned_data["username"]
        if get_user_model().objects.filter(username=name).exists():
            raise forms.ValidationError("A user with this name exists already.")
        return name


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)
