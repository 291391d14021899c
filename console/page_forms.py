"""Forms of the app pages (keys, users, SDK configuration, audit log). They check input early,
for clear messages; the services check it again, as they do for every caller."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from accounts import services
from accounts.models import AuditAction, Scope
from portal.errors import DomainError
from portal.text import validate_plain_text

MIN_KEY_DAYS, MAX_KEY_DAYS = 30, 365
MAX_GRACE_HOURS = 168


class NewKeyForm(forms.Form):
    name = forms.CharField(
        max_length=200,
        validators=[validate_plain_text],
        help_text="What the key is for, e.g. “backend production”.",
    )
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=[Scope.USER_LINK]
    )
    expires_in_days = forms.IntegerField(
        min_value=MIN_KEY_DAYS,
        max_value=MAX_KEY_DAYS,
        label="Expires in (days)",
        help_text=f"Between {MIN_KEY_DAYS} and {MAX_KEY_DAYS}.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        default = settings.API_KEY_DEFAULT_EXPIRY_DAYS
        self.fields["expires_in_days"].initial = min(max(default, MIN_KEY_DAYS), MAX_KEY_DAYS)


class RotateForm(forms.Form):
    grace_hours = forms.IntegerField(
        min_value=0,
        max_value=MAX_GRACE_HOURS,
        initial=24,
        label="Grace period (hours)",
        help_text=f"How long the old key keeps working (0 to {MAX_GRACE_HOURS}), so your "
        "backend can switch over.",
    )


class DeleteUserForm(forms.Form):
    external_id = forms.CharField(
        max_length=256, strip=False, label="Type the user's external id to confirm"
    )

    def __init__(self, *args: Any, expected: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expected = expected

    def clean_external_id(self) -> str:
        value = self.cleaned_data["external_id"]
        if value != self.expected:
            raise ValidationError("This is not the user's external id.")
        return value


class ConfigForm(forms.Form):
    config = forms.CharField(
        widget=forms.Textarea(
            attrs={"rows": 18, "cols": 80, "class": "mono", "spellcheck": "false"}
        ),
        strip=False,
        label="SDK configuration (JSON)",
        help_text=f"A JSON object of at most {services.MAX_SDK_CONFIG_BYTES // 1024} KB, returned "
        "as it is to the SDK at every redemption and status call.",
    )
    base = forms.CharField(widget=forms.HiddenInput, required=False)

    def clean_config(self) -> dict[str, Any]:
        text = self.cleaned_data["config"]
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValidationError(f"Not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ValidationError("Not valid JSON: nested too deeply.") from exc
        if not isinstance(value, dict):
            raise ValidationError('Must be a JSON object, e.g. {"tracking": true}.')
        try:
            return services.check_sdk_config(value)
        except DomainError as exc:
            raise ValidationError(exc.message[:1].upper() + exc.message[1:] + ".") from exc


def action_choices() -> list[tuple[str, str]]:
    return [("", "any action"), *((a.value, a.value) for a in AuditAction)]


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(choices=action_choices, required=False)
    actor = forms.CharField(
        max_length=254,
        required=False,
        help_text="Exactly: an e-mail, a key id or a staff username (a device's own events "
        "are on its user's page).",
    )
    since = forms.DateField(
        required=False, label="From (UTC day)", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="To (UTC day)", widget=forms.DateInput(attrs={"type": "date"})
    )
    before = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean_before(self) -> tuple[dt.datetime, int] | None:
        """The keyset cursor: `<occurred_at ISO>~<id>` of the last event of the page before."""
        raw = self.cleaned_data["before"]
        if not raw:
            return None
        when, _, pk = raw.rpartition("~")
        try:
            cursor = dt.datetime.fromisoformat(when), int(pk)
        except ValueError as exc:
            raise ValidationError("Not a page of this list.") from exc
        if cursor[0].tzinfo is None:  # the pages' cursors always carry their offset
            raise ValidationError("Not a page of this list.")
        try:
            when = cursor[0].astimezone(dt.UTC)
        except OverflowError:  # a day's offset past year 9999 or before year 1: the far end
            when = (dt.datetime.max if cursor[0].year > 1 else dt.datetime.min).replace(
                tzinfo=dt.UTC
            )
        return when, cursor[1]
