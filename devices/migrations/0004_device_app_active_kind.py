"""The partial index of active devices by kind starts with the app: the console's overview
counts one app's devices from it, and the staff dashboard, counting all of them, reads it
whole as it read the former one (`device_active_kind`, which it replaces, so redemption
writes no more index entries than before). Built concurrently on PostgreSQL, so redemptions
are not blocked while it reads the table."""

from django.db import migrations, models

INDEX, FORMER = "device_app_active_kind", "device_active_kind"


def _concurrently(schema_editor) -> str:
    return "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""


def create_index(apps, schema_editor):
    schema_editor.execute(
        f"CREATE INDEX {_concurrently(schema_editor)}IF NOT EXISTS {INDEX}"
        " ON devices_device (app_id, platform, form_factor) WHERE is_active"
    )
    schema_editor.execute(f"DROP INDEX {_concurrently(schema_editor)}IF EXISTS {FORMER}")


def drop_index(apps, schema_editor):
    schema_editor.execute(
        f"CREATE INDEX {_concurrently(schema_editor)}IF NOT EXISTS {FORMER}"
        " ON devices_device (platform, form_factor) WHERE is_active"
    )
    schema_editor.execute(f"DROP INDEX {_concurrently(schema_editor)}IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("devices", "0003_platform_labels"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(create_index, drop_index)],
            state_operations=[
                migrations.RemoveIndex(model_name="device", name=FORMER),
                migrations.AddIndex(
                    model_name="device",
                    index=models.Index(
                        condition=models.Q(("is_active", True)),
                        fields=["app", "platform", "form_factor"],
                        name=INDEX,
                    ),
                ),
            ],
        ),
    ]
