from django.urls import path

from console.views import (
    account,
    audit,
    config,
    home,
    invitations,
    keys,
    overview,
    password_reset,
    people,
    team,
    users,
    webhooks,
)

app_name = "console"

# Pages of one app live under apps/<app_id>/ and are wrapped by `access.member_of_app`.
urlpatterns = [
    path("", home.home, name="home"),
    path("apps/<str:app_id>/", overview.overview, name="overview"),
    path("apps/<str:app_id>/keys/", keys.key_list, name="keys"),
    path("apps/<str:app_id>/keys/new/", keys.key_create, name="key_create"),
    path("apps/<str:app_id>/keys/<str:key_id>/rotate/", keys.key_rotate, name="key_rotate"),
    path("apps/<str:app_id>/keys/<str:key_id>/revoke/", keys.key_revoke, name="key_revoke"),
    path("apps/<str:app_id>/users/", users.user_search, name="users"),
    path("apps/<str:app_id>/users/<str:user_id>/", users.user_detail, name="user_detail"),
    path("apps/<str:app_id>/users/<str:user_id>/disable/", users.user_disable, name="user_disable"),
    path("apps/<str:app_id>/users/<str:user_id>/enable/", users.user_enable, name="user_enable"),
    path("apps/<str:app_id>/users/<str:user_id>/delete/", users.user_delete, name="user_delete"),
    path("apps/<str:app_id>/deletions/<str:request_id>/", users.deletion, name="deletion"),
    path("apps/<str:app_id>/config/", config.config, name="config"),
    path("apps/<str:app_id>/audit/", audit.audit_log, name="audit"),
    path("apps/<str:app_id>/team/", team.team_page, name="team"),
    path("apps/<str:app_id>/team/invite/", team.invite, name="team_invite"),
    path(
        "apps/<str:app_id>/team/members/<int:member_id>/role/",
        team.change_role,
        name="team_role",
    ),
    path(
        "apps/<str:app_id>/team/members/<int:member_id>/remove/",
        team.remove,
        name="team_remove",
    ),
    path(
        "apps/<str:app_id>/team/invitations/<int:invitation_id>/revoke/",
        team.revoke_invitation,
        name="team_revoke",
    ),
    path("apps/<str:app_id>/team/leave/", team.leave, name="team_leave"),
    path("apps/<str:app_id>/webhooks/", webhooks.webhook_list, name="webhooks"),
    path("apps/<str:app_id>/webhooks/new/", webhooks.webhook_create, name="webhook_create"),
    path(
        "apps/<str:app_id>/webhooks/<str:endpoint_id>/",
        webhooks.webhook_detail,
        name="webhook_detail",
    ),
    path(
        "apps/<str:app_id>/webhooks/<str:endpoint_id>/edit/",
        webhooks.webhook_edit,
        name="webhook_edit",
    ),
    path(
        "apps/<str:app_id>/webhooks/<str:endpoint_id>/rotate/",
        webhooks.webhook_rotate,
        name="webhook_rotate",
    ),
    path(
        "apps/<str:app_id>/webhooks/<str:endpoint_id>/enable/",
        webhooks.webhook_enable,
        name="webhook_enable",
    ),
    path(
        "apps/<str:app_id>/webhooks/<str:endpoint_id>/disable/",
        webhooks.webhook_disable,
        name="webhook_disable",
    ),
    path(
        "apps/<str:app_id>/webhooks/<str:endpoint_id>/test/",
        webhooks.webhook_test,
        name="webhook_test",
    ),
    path(
        "apps/<str:app_id>/webhooks/<str:endpoint_id>/deliveries/<int:delivery_id>/redeliver/",
        webhooks.webhook_redeliver,
        name="webhook_redeliver",
    ),
    path("sign-in/", people.sign_in, name="sign_in"),
    path("sign-in/second-factor/", people.second_factor, name="second_factor"),
    path("sign-out/", people.sign_out, name="sign_out"),
    path("account/", account.account, name="account"),
    path("account/password/", account.change_password, name="account_password"),
    path("account/recovery-codes/", account.new_recovery_codes, name="account_recovery_codes"),
    path("account/two-factor/", account.reset_two_factor, name="account_two_factor"),
    path("account/sign-out-everywhere/", account.sign_out_everywhere, name="account_sign_out_all"),
    path("password-reset/", password_reset.reset, name="password_reset"),
    path("password-reset/sent/", password_reset.reset_done, name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        password_reset.reset_confirm,
        name="password_reset_confirm",
    ),
    path("password-reset/done/", password_reset.reset_complete, name="password_reset_complete"),
    path("invitations/accept/", invitations.accept, name="invitation_accept"),
    path("invitations/<str:token>/", invitations.open_link, name="invitation"),
]
