from typing import Any

from accounts.roles import setup_roles
from portal.commands import JsonCommand


class Command(JsonCommand):
    help = "Create or update the staff groups 'Support' and 'Key administrators' (idempotent)."

    def run(self, **options: Any) -> dict[str, Any]:
        return {"groups": setup_roles()}
