from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0009_console_and_webhook_audit"),
    ]

    operations = [
        migrations.AddField(
            model_name="app",
            name="webhook_events",
            field=models.CharField(blank=True, default="", editable=False, max_length=512),
        ),
    ]
