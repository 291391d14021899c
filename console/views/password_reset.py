"""Password reset by e-mail: Django's own views and token generator, with the console's
templates. The mail goes through the configured EMAIL_URL backend; the link works once, for
PASSWORD_RESET_TIMEOUT. A reset does not touch the second factor: the next sign-in still asks
for the authenticator."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import reverse_lazy

from console.forms import ConsolePasswordResetForm
from console.services import lockout, people
from portal.throttling import client_address

log = logging.getLogger("portal.console")


class _ResetView(auth_views.PasswordResetView):
    form_class = ConsolePasswordResetForm
    template_name = "console/password_reset_form.html"
    email_template_name = "console/password_reset_email.txt"
    subject_template_name = "console/password_reset_subject.txt"
    success_url = reverse_lazy("console:password_reset_done")

    def form_valid(self, form: ConsolePasswordResetForm) -> HttpResponse:
        """Over the mail limit the page says the same as ever (whether a mail went out, or
        whether the address has an account, is never told), and no mail goes."""
        address = client_address(self.request) or ""
        if not lockout.reset_mail_allowed(email=form.cleaned_data["email"], address=address):
            log.warning("password-reset mail held back: the hourly limit is reached")
            return HttpResponseRedirect(self.get_success_url())
        return super().form_valid(form)

    @property
    def extra_email_context(self) -> dict[str, str]:
        """The link starts with CONSOLE_BASE_URL, like invitation links, not with whatever
        Host the request named."""
        return {"base_url": settings.CONSOLE_BASE_URL.rstrip("/")}


reset = _ResetView.as_view()
reset_done = auth_views.PasswordResetDoneView.as_view(
    template_name="console/password_reset_done.html"
)


class _ConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "console/password_reset_confirm.html"
    success_url = reverse_lazy("console:password_reset_complete")

    def form_valid(self, form: auth_views.SetPasswordForm) -> HttpResponse:
        response = super().form_valid(form)
        people.password_changed(user=form.user, how="reset")
        return response


reset_confirm = _ConfirmView.as_view()
reset_complete = auth_views.PasswordResetCompleteView.as_view(
    template_name="console/password_reset_complete.html"
)
