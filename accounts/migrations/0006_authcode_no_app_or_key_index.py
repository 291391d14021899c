"""Drops the indexes on AuthCode.app and AuthCode.api_key, concurrently on PostgreSQL.

The state change is two AlterField(db_index=False). Left to Django, the database side would
drop and re-add both foreign keys, and each re-check of every code holds a lock that stops
issuance for as long as it reads the table; the database only needs to lose two indexes.
"""

import django.db.models.deletion
from django.db import migrations, models

INDEXES = {
    "accounts_authcode_app_id_891b9e4e": "app_id",
    "accounts_authcode_api_key_id_04071401": "api_key_id",
}


def _concurrently(schema_editor) -> str:
    return "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""


def drop_indexes(apps, schema_editor):
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX {_concurrently(schema_editor)}IF EXISTS {name}")


def create_indexes(apps, schema_editor):
    for name, column in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX {_concurrently(schema_editor)}IF NOT EXISTS {name}"
            f" ON accounts_authcode ({column})"
        )


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("accounts", "0005_code_digest_constraint"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
            state_operations=[
                migrations.AlterField(
                    model_name="authcode",
                    name="api_key",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="auth_codes",
                        to="accounts.apikey",
                    ),
                ),
                migrations.AlterField(
                    model_name="authcode",
                    name="app",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.app",
                    ),
                ),
            ],
        ),
    ]
