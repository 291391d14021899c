"""Forms of the staff admin: they check input early, for clear messages; the services check
it again, as they do for every caller."""

from __future__ import annotations

import json
import secrets
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import HttpRequest

from accounts.audit import MAX_NOTE_LENGTH
from accounts.models import App, Scope
from accounts.services.apps import check_sdk_config
from portal.errors import DomainError
from portal.text import validate_plain_text


class EmailListField(forms.Field):
    """A list of e-mail addresses, edited one per line (commas work too)."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, list | tuple):
            return "\n".join(value)
        return value or ""

    def to_python(self, value: str | None) -> list[str]:
        parts = (value or "").replace(",", "\n").splitlines()
        return list(dict.fromkeys(part.strip() for part in parts if part.strip()))

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        for email in value:
            try:
                validate_email(email)
            except ValidationError as exc:
                raise ValidationError(f"Not an e-mail address: {email}") from exc


class JsonObjectField(forms.JSONField):
    """JSON that must be an object (the SDK reads its configuration as one), shown indented."""

    widget = forms.Textarea(attrs={"rows": 12, "cols": 80, "style": "font-family: monospace"})

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)

    def validate(self, value: Any) -> None:
        super().validate(value)
        if value is not None and not isinstance(value, dict):
            raise ValidationError('Must be a JSON object, e.g. {"tracking": true}.')
        if value:
            try:  # what the console's editor checks too: storable, bounded
                check_sdk_config(value)
            except DomainError as exc:
                raise ValidationError(exc.message[:1].upper() + exc.message[1:] + ".") from exc


class AppForm(forms.ModelForm):
    contact_emails = EmailListField(
        required=False, help_text="Who is warned before the app's keys expire; one per line."
    )
    sdk_config = JsonObjectField(
        required=False,
        help_text="Returned to the SDK as stored at every redemption and status call.",
    )

    class Meta:
        model = App
        fields = ["name", "is_active", "contact_emails", "sdk_config"]

    def clean_sdk_config(self) -> dict:
        return self.cleaned_data["sdk_config"] or {}


class NewApiKeyForm(forms.Form):
    app = forms.ModelChoiceField(queryset=App.objects.filter(is_active=True))
    name = forms.CharField(max_length=200, help_text="What the key is for, e.g. 'backend prod'.")
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=[Scope.USER_LINK]
    )
    expires_in_days = forms.IntegerField(min_value=1, max_value=3650)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["expires_in_days"].initial = settings.API_KEY_DEFAULT_EXPIRY_DAYS


class RotationForm(forms.Form):
    grace_hours = forms.IntegerField(
        min_value=0,
        max_value=24 * 30,
        initial=24,
        help_text="How long the old key keeps working, so the backend can switch over.",
    )


class ReasonForm(forms.Form):
    """Why staff take a decision, for whoever reads the audit timeline later. Checked here
    with the service's own limits, so a wrong reason is a form error, not a failed action."""

    reason = forms.CharField(
        required=False,
        max_length=MAX_NOTE_LENGTH,
        validators=[validate_plain_text],
        error_messages={
            "max_length": "At most %(limit_value)d characters, please (this has %(show_value)d).",
            "control_characters": "Plain text on one line only: no line breaks, tabs or "
            "other control characters.",
        },
        widget=forms.TextInput(attrs={"size": 80}),
        label="Reason (optional)",
        help_text="Plain text on one line, e.g. a ticket number. Kept in the audit timeline.",
    )


# One-time nonces of the forms that create a secret: a resent form (reload, back button)
# creates nothing. The last ten per session are kept.
_FORM_NONCES = "apikey_form_nonces"


def issue_form_nonce(request: HttpRequest) -> str:
    nonce = secrets.token_urlsafe(16)
    request.session[_FORM_NONCES] = [*request.session.get(_FORM_NONCES, [])[-9:], nonce]
    return nonce


def take_form_nonce(request: HttpRequest, nonce: str) -> bool:
    nonces = request.session.get(_FORM_NONCES, [])
    if nonce not in nonces:
        return False
    request.session[_FORM_NONCES] = [n for n in nonces if n != nonce]
    return True
