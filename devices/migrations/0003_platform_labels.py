"""Platform labels as the platforms spell themselves ("iOS"); choices only, no SQL."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("devices", "0002_admin_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="device",
            name="platform",
            field=models.CharField(
                choices=[("android", "Android"), ("ios", "iOS")], max_length=16
            ),
        ),
    ]
