from typing import Any

from events import services
from portal.commands import JsonCommand


class Command(JsonCommand):
    help = (
        "Re-encrypt every webhook signing secret with the first key of WEBHOOK_ENCRYPTION_KEY "
        "(run after putting a new key first; the old one can be dropped afterwards)."
    )

    def run(self, **options: Any) -> dict[str, Any]:
        return {"reencrypted": services.reencrypt_secrets()}
