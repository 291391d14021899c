"""The console's overview and audit log.

- `DailyActivity` and its one-row `ActivityMark` (from the Unix epoch: the first roll-up
  counts every code and event still there).
- The audit table's plain index on `app_id` becomes `audit_app_recent` (app, -occurred_at,
  -id), which serves whatever the old one did, and two more for the console's filters by
  action and by actor, leaving out the devices' own events (so redemption, which writes
  those, writes no more index entries than before). The indexes are built concurrently on
  PostgreSQL, so the services writing audit events are not blocked while they read the table.
"""

import datetime as dt

import django.db.models.deletion
from django.db import migrations, models

OLD_APP_INDEX = "accounts_auditevent_app_id_d5bb3c30"
NOT_DEVICES = "WHERE NOT (actor_type = 'device')"
INDEXES = {
    "audit_app_recent": "(app_id, occurred_at DESC, id DESC)",
    "audit_app_action": f"(app_id, action, occurred_at DESC, id DESC) {NOT_DEVICES}",
    "audit_app_actor": f"(app_id, actor, occurred_at DESC, id DESC) {NOT_DEVICES}",
}


def _concurrently(schema_editor) -> str:
    return "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""


def create_indexes(apps, schema_editor):
    for name, columns in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX {_concurrently(schema_editor)}IF NOT EXISTS {name}"
            f" ON accounts_auditevent {columns}"
        )
    schema_editor.execute(f"DROP INDEX {_concurrently(schema_editor)}IF EXISTS {OLD_APP_INDEX}")


def drop_indexes(apps, schema_editor):
    schema_editor.execute(
        f"CREATE INDEX {_concurrently(schema_editor)}IF NOT EXISTS {OLD_APP_INDEX}"
        " ON accounts_auditevent (app_id)"
    )
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX {_concurrently(schema_editor)}IF EXISTS {name}")


def create_mark(apps, schema_editor):
    apps.get_model("accounts", "ActivityMark").objects.create(
        pk=1, counted_until=dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    )


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("accounts", "0010_app_webhook_events"),
    ]

    operations = [
        migrations.CreateModel(
            name="ActivityMark",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("counted_until", models.DateTimeField()),
            ],
        ),
        migrations.CreateModel(
            name="DailyActivity",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("day", models.DateField()),
                ("codes_issued", models.BigIntegerField(default=0)),
                ("codes_redeemed", models.BigIntegerField(default=0)),
                ("users_new", models.BigIntegerField(default=0)),
                ("users_restored", models.BigIntegerField(default=0)),
                (
                    "app",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.app",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "daily activity",
                "constraints": [
                    models.UniqueConstraint(
                        fields=("app", "day"), name="one_activity_row_per_app_day"
                    )
                ],
            },
        ),
        migrations.RunPython(create_mark, migrations.RunPython.noop),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(create_indexes, drop_indexes)],
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent",
                    name="app",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="accounts.app",
                    ),
                ),
                migrations.AddIndex(
                    model_name="auditevent",
                    index=models.Index(
                        fields=["app", "-occurred_at", "-id"], name="audit_app_recent"
                    ),
                ),
                migrations.AddIndex(
                    model_name="auditevent",
                    index=models.Index(
                        condition=models.Q(("actor_type", "device"), _negated=True),
                        fields=["app", "action", "-occurred_at", "-id"],
                        name="audit_app_action",
                    ),
                ),
                migrations.AddIndex(
                    model_name="auditevent",
                    index=models.Index(
                        condition=models.Q(("actor_type", "device"), _negated=True),
                        fields=["app", "actor", "-occurred_at", "-id"],
                        name="audit_app_actor",
                    ),
                ),
            ],
        ),
    ]
