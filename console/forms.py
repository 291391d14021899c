"""The console's forms: input checks only; the services decide."""

from __future__ import annotations

from collections.abc import Iterator

from django import forms
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.models import User

from console.models import Role

_CODE_WIDGET = forms.TextInput(
    attrs={"autocomplete": "one-time-code", "inputmode": "text", "size": 16, "autofocus": True}
)


class SignInForm(forms.Form):
    email = forms.EmailField(
        max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "username"})
    )
    password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=32,
        widget=_CODE_WIDGET,
        help_text="The 6-digit code your authenticator app shows, or one of your recovery codes.",
    )


class EnrolmentForm(forms.Form):
    code = forms.CharField(label="Code from the app", max_length=16, widget=_CODE_WIDGET)


class NewPasswordForm(forms.Form):
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return cleaned


class ConfirmPasswordForm(forms.Form):
    """Asked before an account change that a left-open session should not make alone."""

    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, user: User, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("That is not your password.")
        return password


class NewAuthenticatorForm(ConfirmPasswordForm):
    """Replacing the authenticator asks for the password as well as the new app's code: a
    session left open must not be enough to swap the second factor, and with it the recovery
    codes, for one the person does not hold."""

    code = forms.CharField(label="Code from the app", max_length=16, widget=_CODE_WIDGET)


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.DEVELOPER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class ConsolePasswordResetForm(PasswordResetForm):
    """Django's reset form, for console people only: a staff account's password is never
    reset from the console."""

    def get_users(self, email: str) -> Iterator[User]:
        return (
            user
            for user in super().get_users(email)
            if not user.is_staff and user.console_memberships.exists()
        )
