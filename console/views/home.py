"""The console's front door: the apps the signed-in person belongs to."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from console.access import signed_in
from console.models import Membership


@signed_in
def home(request: HttpRequest) -> HttpResponse:
    """One app: straight to its overview. Several: the list to choose from. None: says so."""
    memberships = list(
        Membership.objects.filter(user=request.user).select_related("app").order_by("app__name")
    )
    if len(memberships) == 1:
        return redirect("console:overview", app_id=memberships[0].app.app_id)
    return render(request, "console/home.html", {"memberships": memberships})
