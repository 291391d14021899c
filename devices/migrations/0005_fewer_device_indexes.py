"""Two indexes fewer on devices, concurrently on PostgreSQL: every redemption inserts or
updates a device, and a token refresh rewrites its digest, each writing one entry per index.

- `devices_device_app_id_17c64fb3` (the foreign key's own index): `one_device_per_install`,
  on (app_id, install_id), starts with the app and serves every lookup by app.
- `devices_device_access_token_digest_09bcb5a0_like` (the `varchar_pattern_ops` index Django
  adds beside a unique CharField): nothing searches token digests by prefix; equality is
  served by the unique constraint, which stays. In the state, `unique=True` becomes a
  UniqueConstraint of the same name, so Django does not add the pattern index back.
"""

import django.db.models.deletion
from django.db import migrations, models

INDEXES = {
    "devices_device_app_id_17c64fb3": "(app_id)",
    "devices_device_access_token_digest_09bcb5a0_like": "(access_token_digest varchar_pattern_ops)",
}


def _concurrently(schema_editor) -> str:
    return "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""


def drop_indexes(apps, schema_editor):
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX {_concurrently(schema_editor)}IF EXISTS {name}")


def create_indexes(apps, schema_editor):
    for name, columns in INDEXES.items():
        if "pattern_ops" in columns and schema_editor.connection.vendor != "postgresql":
            continue
        schema_editor.execute(
            f"CREATE INDEX {_concurrently(schema_editor)}IF NOT EXISTS {name}"
            f" ON devices_device {columns}"
        )


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("accounts", "0011_console_activity_and_audit_indexes"),
        ("devices", "0004_device_app_active_kind"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
            state_operations=[
                migrations.AlterField(
                    model_name="device",
                    name="app",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="devices",
                        to="accounts.app",
                    ),
                ),
                migrations.AlterField(
                    model_name="device",
                    name="access_token_digest",
                    field=models.CharField(blank=True, editable=False, max_length=64, null=True),
                ),
                migrations.AddConstraint(
                    model_name="device",
                    constraint=models.UniqueConstraint(
                        fields=("access_token_digest",),
                        name="devices_device_access_token_digest_key",
                    ),
                ),
            ],
        ),
    ]
