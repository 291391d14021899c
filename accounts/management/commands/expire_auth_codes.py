from typing import Any

from accounts import services
from portal.commands import JsonCommand


class Command(JsonCommand):
    help = (
        "Mark expired authentication codes and delete those past the retention period, in "
        "bounded batches (what the scheduler runs every minute)."
    )

    def run(self, **options: Any) -> dict[str, Any]:
        result = services.sweep_auth_codes()
        return {"expired": result.expired, "purged": result.purged}
