from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Apps, keys and users"

    def ready(self) -> None:
        from accounts import staff_signin  # noqa: F401 - connects the sign-in audit receivers
