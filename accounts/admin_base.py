"""What every staff admin page shares: built for tables of millions of rows, and read-only
unless a page says otherwise, because every write goes through a service."""

from __future__ import annotations

import datetime as dt
from functools import cached_property, reduce
from operator import or_
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import BooleanField, Func, Model, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.http import urlencode

from accounts.audit import Actor
from accounts.models import App, AuditEvent

TIMELINE_EVENTS = 50


class InSubquery(Func):
    """`expression IN (subquery)` that an index serves inside an OR: PostgreSQL runs an
    `IN (subquery)` there as a filter on every row (a sequential scan), but `= ANY(ARRAY(
    subquery))` once, as an init plan whose values the index scan then looks up."""

    output_field = BooleanField()
    conditional = True

    def __init__(self, expression: Any, subquery: QuerySet) -> None:
        super().__init__(expression, Subquery(subquery))

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = compiler.compile(self.source_expressions[0])
        rhs, rhs_params = compiler.compile(self.source_expressions[1])
        return f"{lhs} IN {rhs}", [*lhs_params, *rhs_params]

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        lhs, lhs_params = compiler.compile(self.source_expressions[0])
        rhs, rhs_params = compiler.compile(self.source_expressions[1])
        return f"{lhs} = ANY(ARRAY{rhs})", [*lhs_params, *rhs_params]


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
      `exact`, `hexid` for the portal's lower-case ids, or `prefix` on a pattern-ops index),
      on the whole search text as one term (external ids may contain spaces), never a
      case-insensitive or contains scan, with the same results on PostgreSQL and SQLite.
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


def when(value: dt.datetime | None) -> str:
    """A time as every page of the admin writes it, lists and forms included
    (`portal/formats`): "2026-11-30 06:40 UTC"."""
    if value is None:
        return "-"
    return formats.localize(timezone.template_localtime(value))


def clipped(text: str, title: str | None = None, *, wide: bool = False) -> str:
    """`text` on one line, cut with an ellipsis where its column ends (the admin's
    stylesheet), and whole in its tooltip: a list keeps its width whatever the value. A
    `wide` column is the one a list is read by (a user's external id)."""
    return format_html(
        '<span class="clip{}" title="{}">{}</span>', " wide" if wide else "", title or text, text
    )


@admin.display(description="app")
def app_name(obj: Model) -> str:
    """A list's app column: the name, and the id in the tooltip (it is on the app's page)."""
    app: App | None = obj.app
    if app is None:
        return "-"
    return clipped(app.name, f"{app.name} ({app.app_id})")
