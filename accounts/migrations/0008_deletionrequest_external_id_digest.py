"""Keeps a keyed digest of the deleted user's external id on each deletion request, so that
support can find a request by external id once the user is purged.

A nullable column without a default is a change of the catalogue only (no table rewrite);
older requests keep it empty. The index is built concurrently on PostgreSQL, so deletions
are not blocked while it reads the table.
"""

from django.db import migrations, models

INDEX = "deletion_external_id"


def _concurrently(schema_editor) -> str:
    return "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""


def create_index(apps, schema_editor):
    schema_editor.execute(
        f"CREATE INDEX {_concurrently(schema_editor)}IF NOT EXISTS {INDEX}"
        " ON accounts_deletionrequest (external_id_digest)"
    )


def drop_index(apps, schema_editor):
    schema_editor.execute(f"DROP INDEX {_concurrently(schema_editor)}IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("accounts", "0007_audit_staff_sign_in_actions"),
    ]

    operations = [
        migrations.AddField(
            model_name="deletionrequest",
            name="external_id_digest",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(create_index, drop_index)],
            state_operations=[
                migrations.AddIndex(
                    model_name="deletionrequest",
                    index=models.Index(fields=["external_id_digest"], name=INDEX),
                ),
            ],
        ),
    ]
