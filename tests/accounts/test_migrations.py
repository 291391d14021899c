"""The migrations agree with the models; 0006 drops its two indexes without re-checking the
codes' foreign keys (which would stop issuance on a big table), and 0008 adds a column and
its index without rewriting the table of deletion requests."""

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


def _deletion_table() -> tuple[int, dict[str, bool]]:
    """The table's file (a new one if the table was rewritten) and its indexes' validity."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relfilenode FROM pg_class WHERE relname = 'accounts_deletionrequest'"
        )
        [(file_node,)] = cursor.fetchall()
        cursor.execute(
            "SELECT index.relname, pg_index.indisvalid FROM pg_index"
            " JOIN pg_class index ON index.oid = pg_index.indexrelid"
            " WHERE pg_index.indrelid = 'accounts_deletionrequest'::regclass"
        )
        return file_node, dict(cursor.fetchall())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_0008_adds_the_external_id_digest_without_rewriting_the_table():
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([("accounts", "0007_audit_staff_sign_in_actions")])
        file_before, indexes_before = _deletion_table()
        executor = MigrationExecutor(connection)
        executor.migrate([("accounts", "0008_deletionrequest_external_id_digest")])
        file_after, indexes_after = _deletion_table()
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert file_after == file_before
    assert indexes_after == {**indexes_before, "deletion_external_id": True}
