"""Schema changes of the devices app that must not stop redemptions while they run."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def _device_table() -> tuple[set[str], dict[str, tuple[str, int]]]:
    """The index names of devices_device, and its constraints with their kinds and oids."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'devices_device'")
        indexes = {name for (name,) in cursor.fetchall()}
        cursor.execute(
            "SELECT conname, contype, oid FROM pg_constraint"
            " WHERE conrelid = 'devices_device'::regclass"
        )
        return indexes, {name: (kind, oid) for name, kind, oid in cursor.fetchall()}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_0005_drops_two_indexes_and_keeps_every_constraint():
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([("devices", "0004_device_app_active_kind")])
        indexes_before, constraints_before = _device_table()
        executor = MigrationExecutor(connection)
        executor.migrate([("devices", "0005_fewer_device_indexes")])
        indexes_after, constraints_after = _device_table()
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert indexes_before - indexes_after == {
        "devices_device_app_id_17c64fb3",
        "devices_device_access_token_digest_09bcb5a0_like",
    }
    assert indexes_after < indexes_before
    # The same constraints, the same oids: the foreign keys and the token's uniqueness were
    # neither dropped nor added again (each would re-check or re-index the whole table).
    assert constraints_after == constraints_before
    assert constraints_after["devices_device_access_token_digest_key"][0] == "u"
    assert sum(kind == "f" for kind, _ in constraints_after.values()) == 2  # app, user
