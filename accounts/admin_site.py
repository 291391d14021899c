"""The staff admin site. Installed in place of `django.contrib.admin` (INSTALLED_APPS names
`StaffAdminConfig`), so every app's admin registers on it."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse


class StaffAdminSite(admin.AdminSite):
    """Staff outside the roles see nothing: where Django would show them an empty index,
    they get 403, as on every model page."""

    site_header = "Portal administration"
    site_title = "Portal admin"
    index_title = "Support dashboard"
    site_url = None  # the portal has no public site to "view"

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
