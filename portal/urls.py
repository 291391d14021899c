from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.api import AuthCodeView, DeletionStatusView
from devices.api import (
    RedeemView,
    ResetView,
    StatusView,
    TokenView,
    UserDetailView,
    UserLookupView,
)
from portal.metrics import metrics_view
from portal.views import HealthView, ReadyView

urlpatterns = [
    path("users/auth-code", AuthCodeView.as_view(), name="auth-code"),
    path("users", UserLookupView.as_view(), name="user-lookup"),
    path("users/<str:user_id>", UserDetailView.as_view(), name="user-detail"),
    path("users/deletions/<str:request_id>", DeletionStatusView.as_view(), name="deletion-status"),
    path("sdk/users", RedeemView.as_view(), name="sdk-redeem"),
    path("sdk/status", StatusView.as_view(), name="sdk-status"),
    path("sdk/token", TokenView.as_view(), name="sdk-token"),
    path("sdk/reset", ResetView.as_view(), name="sdk-reset"),
    path("healthz", HealthView.as_view(), name="healthz"),
    path("readyz", ReadyView.as_view(), name="readyz"),
    # A plain Django view, so not in the OpenAPI document: it is for operators' scrapers.
    path("metrics", metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
    path("console/", include("console.urls")),
]

handler400 = "portal.views.bad_request"
handler404 = "portal.views.not_found"
handler500 = "portal.views.server_error"
