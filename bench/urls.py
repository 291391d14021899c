"""The product's URLs and the three views `bench/http.py` compares them with."""

from django.urls import path

from bench import views
from portal.urls import handler400, handler404, handler500  # noqa: F401
from portal.urls import urlpatterns as product_urlpatterns

urlpatterns = [
    *product_urlpatterns,
    path("bench/floor", views.floor, name="bench-floor"),
    path("bench/key-check", views.KeyCheckView.as_view(), name="bench-key-check"),
    path("bench/peer", views.PeerView.as_view(), name="bench-peer"),
]
