"""The app's SDK configuration: edited as JSON, shown as a diff against the current one
before it is saved."""

from __future__ import annotations

import difflib
import hashlib
import json
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts import services
from console.access import actor, member_of_app
from console.models import Membership, Role
from console.page_forms import ConfigForm
from portal.errors import DomainError


def pretty(config: Any) -> str:
    return json.dumps(config, ensure_ascii=False, indent=2, sort_keys=True)


def version(config: Any) -> str:
    """Names the configuration a preview was made against: saving refuses a preview of a
    configuration someone else changed meanwhile."""
    return hashlib.sha256(pretty(config).encode()).hexdigest()[:16]


def diff_lines(before: Any, after: Any) -> list[tuple[str, str]]:
    """(kind, line) of a unified diff of the two, pretty-printed with sorted keys, so that
    only real changes show; kind is "add", "remove", "hunk" or "same"."""
    lines = difflib.unified_diff(
        pretty(before).splitlines(),
        pretty(after).splitlines(),
        fromfile="current",
        tofile="new",
        lineterm="",
    )
    kinds = {"+": "add", "-": "remove", "@": "hunk"}
    return [(kinds.get(line[:1], "same"), line) for line in list(lines)[2:]]


@member_of_app()
def config(request: HttpRequest, *, membership: Membership) -> HttpResponse:
    """GET: the configuration (and, for developers, the editor). POST `preview`: the diff;
    POST `save` (from the preview): saved, with an audit event holding before and after."""
    app = membership.app
    can_change = membership.allows(Role.DEVELOPER)
    context: dict[str, Any] = {"membership": membership, "current": pretty(app.sdk_config)}
    if request.method == "POST":
        if not can_change:
            context["needed"] = Role.DEVELOPER
            return render(request, "console/forbidden.html", context, status=403)
        form = ConfigForm(request.POST)
        if form.is_valid():
            new = form.cleaned_data["config"]
            stale = form.cleaned_data["base"] != version(app.sdk_config)
            if "save" in request.POST and not stale:
                try:
                    services.set_sdk_config(app=app, config=new, actor=actor(request))
                except DomainError as exc:
                    form.add_error("config", exc.message)
                else:
                    messages.success(request, "The SDK configuration is saved.")
                    return redirect("console:config", app_id=app.app_id)
            if stale and "save" in request.POST:
                messages.warning(
                    request,
                    "The configuration was changed by someone else since your preview: "
                    "review the changes against it again.",
                )
            context["diff"] = diff_lines(app.sdk_config, new)
            context["unchanged"] = new == app.sdk_config
            form = ConfigForm(initial={"config": pretty(new), "base": version(app.sdk_config)})
    else:
        form = ConfigForm(
            initial={"config": pretty(app.sdk_config), "base": version(app.sdk_config)}
        )
    context.update(form=form if can_change else None, can_change=can_change)
    return render(request, "console/config.html", context)
