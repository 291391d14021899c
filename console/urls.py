from django.urls import path

from console.views import home

app_name = "console"

# Pages of one app live under apps/<app_id>/ and are wrapped by `access.member_of_app`.
urlpatterns = [
    path("", home.home, name="home"),
    path("apps/<str:app_id>/", home.not_built_yet, name="overview"),
    path("apps/<str:app_id>/keys/", home.not_built_yet, name="keys"),
    path("apps/<str:app_id>/users/", home.not_built_yet, name="users"),
    path("apps/<str:app_id>/config/", home.not_built_yet, name="config"),
    path("apps/<str:app_id>/audit/", home.not_built_yet, name="audit"),
    path("apps/<str:app_id>/team/", home.not_built_yet, name="team"),
    path("sign-in/", home.home, name="sign_in"),
    path("sign-in/second-factor/", home.home, name="second_factor"),
    path("sign-out/", home.home, name="sign_out"),
    path("account/", home.home, name="account"),
]
