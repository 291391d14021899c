from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from portal import lookups, metrics, sessions  # noqa: F401 (lookups registers itself)

        metrics.connect_task_signals()
        user_logged_in.connect(sessions.mark_seen, dispatch_uid="portal_session_seen")
