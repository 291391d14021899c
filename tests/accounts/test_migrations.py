"""The migrations agree with the models, and 0006 drops its two indexes without re-checking
the codes' foreign keys (which would stop issuance on a big table)."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


@pytest.mark.django_db
def test_the_migrations_match_the_models():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)  # SystemExit(1) if not


def _code_table() -> tuple[set[str], dict[str, int]]:
    """The index names of accounts_authcode, and its foreign keys with their oids."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'accounts_authcode'")
        indexes = {name for (name,) in cursor.fetchall()}
        cursor.execute(
            "SELECT conname, oid FROM pg_constraint"
            " WHERE conrelid = 'accounts_authcode'::regclass AND contype = 'f'"
        )
        return indexes, dict(cursor.fetchall())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_0006_drops_two_indexes_and_leaves_the_foreign_keys_alone():
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([("accounts", "0005_code_digest_constraint")])
        indexes_before, foreign_keys_before = _code_table()
        executor = MigrationExecutor(connection)
        executor.migrate([("accounts", "0006_authcode_no_app_or_key_index")])
        indexes_after, foreign_keys_after = _code_table()
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert indexes_before - indexes_after == {
        "accounts_authcode_app_id_891b9e4e",
        "accounts_authcode_api_key_id_04071401",
    }
    assert indexes_after < indexes_before
    # The same constraints with the same oids: not dropped and added again.
    assert foreign_keys_after == foreign_keys_before
    assert len(foreign_keys_after) == 3  # app, user, api_key
