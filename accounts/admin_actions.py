"""Staff actions that change state, each behind one confirmation page.

A changelist action and a link on an object's page both lead to the same page, which says
object by object what will happen (or why it cannot); confirming runs the service. A secret
that an action produces (a rotated key) is shown in the answer to that POST only: it is
never put in a message, the session or a cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from accounts.admin_base import admin_change_url, staff_actor
from accounts.admin_forms import issue_form_nonce, take_form_nonce
from accounts.audit import Actor
from portal.errors import DomainError, ErrorCode

MAX_OBJECTS = 100
"""At most this many objects per action: a bulk repair of more is a job for an operator."""


@dataclass(frozen=True)
class Outcome:
    message: str
    level: int = messages.SUCCESS
    shown_once: tuple[str, str] | None = None
    """(what, secret) to show once on the answer page, e.g. a rotated key."""
    shown_on: Model | None = None
    """The object whose page tells what happened, to land on instead of the page the staff
    member came from: a deleted user's own page is gone once its purge has run."""


@dataclass(frozen=True)
class StaffAction:
    name: str
    label: str
    permission: str
    """`app_label.codename` the staff member needs."""
    perform: Callable[[Any, Actor, Mapping[str, Any]], Outcome]
    """Runs the service for one object; a DomainError is shown as the refusal it is."""
    check: Callable[[Any], None]
    """The service's own `check_*`: a DomainError says why the action cannot be taken on the
    object (and it is not offered on the object's page)."""
    consequence: Callable[[Any], str]
    """What will happen to the object, in words, once `check` has passed."""
    form: type[forms.Form] | None = None
    """Extra input asked on the confirmation page (its cleaned data goes to `perform`)."""
    single: bool = False


class StaffActionsMixin(admin.ModelAdmin):
    staff_actions: tuple[StaffAction, ...] = ()

    def get_urls(self) -> list:
        name = f"{self.opts.app_label}_{self.opts.model_name}_staff_action"
        view = self.admin_site.admin_view(self.staff_action_view)
        return [path("action/<str:action_name>/", view, name=name), *super().get_urls()]

    def permitted_staff_actions(self, request: HttpRequest) -> list[StaffAction]:
        return [a for a in self.staff_actions if request.user.has_perm(a.permission)]

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        for action in self.permitted_staff_actions(request):
            description = f"{action.label}: selected {self.opts.verbose_name_plural}…"
            actions[action.name] = (self._changelist_action(action), action.name, description)
        return actions

    def staff_action_url(self, action: StaffAction, pks: Iterable[Any], next_url: str) -> str:
        base = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_staff_action",
            args=[action.name],
            current_app=self.admin_site.name,
        )
        return f"{base}?{urlencode({'ids': ','.join(map(str, pks)), 'next': next_url})}"

    def staff_action_links(
        self, request: HttpRequest, obj: Model, next_url: str
    ) -> list[tuple[str, str]]:
        """(label, url) of the actions this staff member may take on `obj`."""
        return [
            (action.label, self.staff_action_url(action, [obj.pk], next_url))
            for action in self.permitted_staff_actions(request)
            if _refusal(action, obj) is None
        ]

    def render_change_form(
        self, request: HttpRequest, context: dict, *args: Any, obj: Model | None = None, **kw: Any
    ) -> HttpResponse:
        if obj is not None:
            context["staff_action_links"] = self.staff_action_links(
                request, obj, request.get_full_path()
            )
        return super().render_change_form(request, context, *args, obj=obj, **kw)

    def _changelist_action(self, action: StaffAction) -> Callable:
        def to_confirmation(
            modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
        ) -> HttpResponse | None:
            pks = list(queryset.values_list("pk", flat=True)[: MAX_OBJECTS + 1])
            limit = 1 if action.single else MAX_OBJECTS
            if len(pks) > limit:
                self.message_user(
                    request, f"{action.label}: select at most {limit}.", messages.ERROR
                )
                return None
            return HttpResponseRedirect(self.staff_action_url(action, pks, request.get_full_path()))

        return to_confirmation

    def staff_action_view(self, request: HttpRequest, action_name: str) -> HttpResponse:
        action = next((a for a in self.staff_actions if a.name == action_name), None)
        if action is None:
            raise Http404(f"no action {action_name!r}")
        if not (self.has_view_permission(request) and request.user.has_perm(action.permission)):
            raise PermissionDenied
        source = request.POST if request.method == "POST" else request.GET
        next_url = self._safe_next(request, source.get("next", ""))
        pks = [pk for pk in source.get("ids", "").split(",") if pk.isdigit()][:MAX_OBJECTS]
        objects = list(self.get_queryset(request).filter(pk__in=pks))
        if not objects or (action.single and len(objects) > 1):
            self.message_user(request, f"{action.label}: nothing to do.", messages.WARNING)
            return HttpResponseRedirect(next_url)
        form = action.form(request.POST or None) if action.form else None
        if request.method == "POST" and (form is None or form.is_valid()):
            data = form.cleaned_data if form else {}
            return self._perform(request, action, objects, data, next_url)
        rows = [(obj, *self._consequence(action, obj)) for obj in objects]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{action.label}: please confirm",
            "action": action,
            "rows": rows,
            "possible": any(refusal is None for _, _, refusal in rows),
            "form": form,
            "ids": ",".join(str(obj.pk) for obj in objects),
            "next_url": next_url,
        }
        return TemplateResponse(request, "admin/staff_action_confirm.html", context)

    def _perform(
        self,
        request: HttpRequest,
        action: StaffAction,
        objects: list[Model],
        data: Mapping[str, Any],
        next_url: str,
    ) -> HttpResponse:
        actor = staff_actor(request)
        shown_once = []
        landings = []
        for obj in objects:
            refusal = _refusal(action, obj)  # as shown on the confirmation page, checked again
            try:
                if refusal is not None:
                    raise DomainError(ErrorCode.INVALID_REQUEST, refusal)
                outcome = action.perform(obj, actor, data)
            except DomainError as exc:
                outcome = Outcome(f"{obj}: {exc.message}", messages.ERROR)
            self.message_user(request, outcome.message, outcome.level)
            if outcome.shown_once:
                shown_once.append(outcome.shown_once)
            if outcome.shown_on is not None:
                landings.append(outcome.shown_on)
        if landings:
            next_url = self._landing(request, landings, next_url)
        if not shown_once:
            return HttpResponseRedirect(next_url)
        return shown_once_response(request, self, shown_once, next_url)

    @staticmethod
    def _consequence(action: StaffAction, obj: Model) -> tuple[str, str | None]:
        """(what will happen, None) or ("", why it cannot)."""
        refusal = _refusal(action, obj)
        return ("", refusal) if refusal else (action.consequence(obj), None)

    def _landing(self, request: HttpRequest, landings: list[Model], next_url: str) -> str:
        """The page of the one object that tells what happened, if the staff member may see
        it, else this admin's list (the acted-on object's own page may be gone); after acting
        on several objects, the list the staff member came from."""
        if len(landings) > 1:
            return next_url
        [obj] = landings
        if self.admin_site.get_model_admin(type(obj)).has_view_permission(request, obj):
            return reverse(
                f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change",
                args=[obj.pk],
                current_app=self.admin_site.name,
            )
        return self._safe_next(request, "")

    def _safe_next(self, request: HttpRequest, candidate: str) -> str:
        if candidate and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return candidate
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist",
            current_app=self.admin_site.name,
        )


def _refusal(action: StaffAction, obj: Model) -> str | None:
    """Why the service would refuse `action` on `obj`, or None."""
    try:
        action.check(obj)
    except DomainError as exc:
        return exc.message
    return None


@dataclass(frozen=True)
class Created:
    """What `secret_add_view`'s `create` made: the object and its secret, named for the page
    that shows it once."""

    obj: Model
    what: str
    secret: str


def secret_add_view(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    *,
    form: forms.Form,
    create: Callable[[dict[str, Any], Actor], Created],
    resent: str,
    shown_once_note: str,
    submit_label: str,
) -> HttpResponse:
    """The add page of a model whose object comes with a secret (an API key, a webhook
    endpoint): `create` makes it through its service, and the secret is shown in the answer to
    this POST only. A one-time form nonce makes a resent form (reload, back button) create
    nothing: it is sent back to the list with the `resent` message."""
    if not model_admin.has_add_permission(request):
        raise PermissionDenied
    if request.method == "POST" and form.is_valid():
        if not take_form_nonce(request, request.POST.get("form_nonce", "")):
            model_admin.message_user(request, resent, messages.ERROR)
            opts = model_admin.opts
            return HttpResponseRedirect(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
            )
        try:
            created = create(form.cleaned_data, staff_actor(request))
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            return shown_once_response(
                request,
                model_admin,
                [(created.what, created.secret)],
                admin_change_url(created.obj),
            )
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": f"Add {model_admin.opts.verbose_name}",
        "form": form,
        "form_nonce": issue_form_nonce(request),
        "shown_once_note": shown_once_note,
        "submit_label": submit_label,
    }
    return TemplateResponse(request, "admin/secret_add_form.html", context)


def shown_once_response(
    request: HttpRequest,
    model_admin: admin.ModelAdmin,
    secrets: list[tuple[str, str]],
    next_url: str,
) -> HttpResponse:
    """The one page that ever shows these secrets: rendered in the answer to the POST that
    made them, kept nowhere (admin views are never cached: `Cache-Control: no-store`)."""
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Copy it now",
        "secrets": secrets,
        "next_url": next_url,
    }
    return TemplateResponse(request, "admin/shown_once.html", context)
