"""The staff admin site. Installed in place of `django.contrib.admin` (INSTALLED_APPS names
`StaffAdminConfig`), so every app's admin registers on it."""

from __future__ import annotations

from functools import update_wrapper
from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache


class StaffAdminSite(admin.AdminSite):
    """Staff outside the roles see nothing: where Django would show them an empty index,
    they get 403, as on every model page, on a page that says why and offers sign-out
    (a bare 403 reads as a fault of the portal, and leaves them signed in).

    With `STAFF_2FA_REQUIRED` a session counts only once an authenticator confirmed the
    sign-in (django-otp's `OTPAdminSite` rule); a staff member without one is sent to set it
    up (`accounts.staff_2fa`)."""

    site_header = "Portal administration"
    site_title = "Portal admin"
    index_title = "Support dashboard"
    site_url = None  # the portal has no public site to "view"
    login_template = "admin/login.html"
    # Its 275 px are what a list needs on a laptop: the breadcrumbs and the index lead to
    # the seven lists there are (templates/admin/base_site.html fits them to 1366 px).
    enable_nav_sidebar = False

    @property
    def login_form(self) -> type:
        # Imported here: the site is built while apps load, before models can be imported.
        from accounts.staff_2fa import StaffAuthenticationForm

        return StaffAuthenticationForm

    def has_permission(self, request: HttpRequest) -> bool:
        from accounts import staff_2fa

        if not super().has_permission(request):
            return False
        return not staff_2fa.required() or staff_2fa.is_verified(request.user)

    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        """Django's gate, plus: a staff member signed in with the password only is sent to
        set up an authenticator (or, having one, back to the sign-in form for its code), and
        may always sign out."""
        from django.contrib.auth.views import redirect_to_login

        from accounts import staff_2fa

        guarded = super().admin_view(view, cacheable)

        def inner(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if staff_2fa.awaits_second_factor(request):
                if request.path == reverse("admin:logout", current_app=self.name):
                    return never_cache(view)(request, *args, **kwargs)
                if not staff_2fa.has_authenticator(request.user):
                    return redirect_to_login(request.get_full_path(), self._enrolment_url())
            try:
                return guarded(request, *args, **kwargs)
            except PermissionDenied:
                if not self._outside_the_roles(request):
                    raise
                return self._outside_the_roles_page(request)

        return update_wrapper(inner, guarded)

    def _outside_the_roles(self, request: HttpRequest) -> bool:
        """A signed-in staff member in none of the staff roles (one query, on a refusal
        only); a member of a role refused one page keeps Django's 403."""
        from accounts.roles import role_permissions

        user = request.user
        return (
            user.is_authenticated
            and user.is_active
            and user.is_staff
            and not user.is_superuser
            and not user.groups.filter(name__in=role_permissions().keys()).exists()
        )

    def _outside_the_roles_page(self, request: HttpRequest) -> HttpResponse:
        from accounts.roles import role_permissions

        context = {
            **self.each_context(request),
            "title": "No staff role yet",
            "roles": list(role_permissions()),
            "logout_url": reverse("admin:logout", current_app=self.name),
        }
        response = TemplateResponse(request, "admin/outside_the_roles.html", context, status=403)
        add_never_cache_headers(response)
        return response

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        from django.contrib.auth.views import redirect_to_login

        from accounts import staff_2fa

        if (
            request.method == "GET"
            and staff_2fa.awaits_second_factor(request)
            and not staff_2fa.has_authenticator(request.user)
        ):
            return redirect_to_login(
                request.GET.get("next") or reverse("admin:index", current_app=self.name),
                self._enrolment_url(),
            )
        context = {"staff_2fa_required": staff_2fa.required(), **(extra_context or {})}
        return super().login(request, context)

    def get_urls(self) -> list:
        from accounts.staff_2fa import enrolment_view

        def enrol(request: HttpRequest) -> HttpResponse:
            return enrolment_view(self, request)

        return [
            path("2fa/enrol/", never_cache(enrol), name="staff_2fa_enrol"),
            *super().get_urls(),
        ]

    def _enrolment_url(self) -> str:
        return reverse("admin:staff_2fa_enrol", current_app=self.name)

    def index(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        self._require_a_page(request)
        return super().index(request, extra_context)

    def app_index(
        self, request: HttpRequest, app_label: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        self._require_a_page(request)
        return super().app_index(request, app_label, extra_context)

    def _require_a_page(self, request: HttpRequest) -> None:
        if not self.get_app_list(request):
            raise PermissionDenied


class StaffAdminConfig(AdminConfig):
    default_site = "accounts.admin_site.StaffAdminSite"

    def ready(self) -> None:
        """After autodiscovery: django-otp registers an admin of authenticator devices,
        which would let an administrator read or set a colleague's secret key. Devices are
        set up by their owner only, and reset with `reset_staff_2fa`."""
        super().ready()
        from django_otp.plugins.otp_totp.models import TOTPDevice

        if self.module.site.is_registered(TOTPDevice):
            self.module.site.unregister(TOTPDevice)
