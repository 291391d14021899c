"""What every staff admin page shares: built for tables of millions of rows, and read-only
unless a page says otherwise, because every write goes through a service."""

from __future__ import annotations

from functools import cached_property, reduce
from operator import or_
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode

from accounts.audit import Actor
from accounts.models import AuditEvent

TIMELINE_EVENTS = 50


class CappedCountPaginator(Paginator):
    """Counts matching rows only up to `cap`: COUNT(*) over millions of rows costs seconds
    and a support search never needs to page that far. Past the cap the list says "More than 1000"
    and only the first pages are reachable."""

    cap = 1000

    @cached_property
    def _counted(self) -> int:
        """Any `cap + 1` matching rows will do: without the list's order and annotations,
        the database stops at the first ones an index or the table yields, instead of
        reading the matches in the list's order (all of the table, for matches that are
        all old ones) and computing each row's annotations."""
        return self.object_list.order_by().values("pk")[: self.cap + 1].count()

    @cached_property
    def count(self) -> int:
        return min(self._counted, self.cap)

    @property
    def capped(self) -> bool:
        return self._counted > self.cap


class AuditHistoryMixin(admin.ModelAdmin):
    """The "History" button shows the object's audit timeline, newest first: every change
    goes through a service that records an audit event, so Django's own change log stays
    empty."""

    def audit_timeline(self, obj: Model) -> tuple[Q, str] | None:
        """(the filter of the object's audit events, the audit list's search for all of
        them), by an index of the audit table; None for objects without events of their own."""
        return None

    def change_log(self, request: HttpRequest, obj: Model) -> QuerySet | None:
        """Django's own record of edits made in this admin, for the few models that are
        edited through it rather than through a service; None for the others."""
        return None

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_or_change_permission(request, obj):
            raise PermissionDenied
        timeline = self.audit_timeline(obj)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": f"History: {obj}",
            "subtitle": None,
            "module_name": str(self.opts.verbose_name_plural).capitalize(),
            "object": obj,
            "opts": self.opts,
            "preserved_filters": self.get_preserved_filters(request),
            "has_timeline": timeline is not None,
            "change_log": self.change_log(request, obj),
            **(extra_context or {}),
        }
        if timeline is not None and request.user.has_perm("accounts.view_auditevent"):
            events, search = timeline
            context["timeline"] = AuditEvent.objects.filter(events).order_by("-occurred_at", "-id")[
                :TIMELINE_EVENTS
            ]
            context["timeline_url"] = (
                reverse("admin:accounts_auditevent_changelist", current_app=self.admin_site.name)
                + "?"
                + urlencode({"q": search})
            )
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/audit_history.html", context)


class StaffAdmin(AuditHistoryMixin, admin.ModelAdmin):
    """Base of every admin of the portal.

    - No full-table COUNT: capped paginator, no full result count, no facet counts.
    - Search with exactly the lookups in `search_fields` (each must be served by an index:
      `exact`, or `startswith` on a pattern-ops index), on the whole search text as one term
      (external ids may contain spaces), never a case-insensitive or contains scan.
    - Read-only: nothing is added, changed or deleted through the generic views.
    """

    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    sortable_by: tuple[str, ...] = ()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term or not self.search_fields:
            return queryset, False
        return queryset.filter(self.search_filter(term)), False

    def search_filter(self, term: str) -> Q:
        return reduce(or_, (Q(**{lookup: term}) for lookup in self.search_fields))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


def staff_actor(request: HttpRequest) -> Actor:
    """The audit trail's name for the staff member behind a request."""
    return Actor.staff(request.user.get_username())


def admin_change_url(obj: Model) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
