"""The views `bench/http.py` measures the product against; mounted by `bench/urls.py` only.

- `floor`: the cheapest write request this stack serves. A plain Django view behind the
  portal's whole middleware: one indexed SELECT (the app by `app_id`), one INSERT (a row in
  `bench_floor_hit`, a table the bench creates with raw SQL), a small JSON answer.
- `KeyCheckView`: the customer API's key check alone, as a customer view sees it: the
  portal's API-key authentication, the scope permission and the per-key rate limiter, then a
  small JSON answer.
- `PeerView`: djangorestframework-api-key's `HasAPIKey` on a DRF view (no authentication
  class, no throttle, as its documentation shows it), then the same small JSON answer.
"""

from __future__ import annotations

import json

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_api_key.permissions import HasAPIKey

from accounts.api import CustomerApiView
from accounts.models import Scope

FLOOR_TABLE = """
    CREATE TABLE IF NOT EXISTS bench_floor_hit (
        id bigserial PRIMARY KEY,
        app_id bigint NOT NULL,
        action varchar(32) NOT NULL,
        created_at timestamptz NOT NULL
    )
"""


@csrf_exempt
def floor(request: HttpRequest) -> HttpResponse:
    """POST `{"app_id": …}`: the app's row by its unique `app_id`, one row inserted."""
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    app_id = json.loads(request.body)["app_id"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM accounts_app WHERE app_id = %s", [app_id])
        row = cursor.fetchone()
        if row is None:
            return JsonResponse({"error": "no such app"}, status=404)
        cursor.execute(
            "INSERT INTO bench_floor_hit (app_id, action, created_at) "
            "VALUES (%s, 'floor', now()) RETURNING id",
            [row[0]],
        )
        (hit,) = cursor.fetchone()
    return JsonResponse({"app_id": app_id, "hit": hit})


class KeyCheckView(CustomerApiView):
    """GET with `Authorization: Bearer <key_id>.<secret>`, scope `user.read`."""

    required_scopes = {"GET": Scope.USER_READ}

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class PeerView(APIView):
    """GET with `Authorization: Api-Key <prefix>.<secret>`."""

    authentication_classes = []
    permission_classes = [HasAPIKey]
    throttle_classes = []

    def get(self, request: Request) -> Response:
        return Response({"ok": True})
