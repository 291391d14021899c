"""What every staff admin page shares: built for tables of millions of rows, and read-only
unless a page says otherwise, because every write goes through a service."""

from __future__ import annotations

from functools import cached_property, reduce
from operator import or_

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Model, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse

from accounts.audit import Actor


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


class StaffAdmin(admin.ModelAdmin):
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
