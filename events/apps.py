from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "events"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from accounts import lifecycle
        from events import outbox

        lifecycle.connect_outbox(build=outbox.build, written=outbox.written)
