from django.db import migrations, models
from django.db.models import Exists, OuterRef


def mark_ended_sessions(apps, schema_editor):
    """Sessions that had already ended (closed, nothing left to deliver) ended at their last change: live clients
    are then not told of their end again."""
    UploadSession = apps.get_model("sessions_app", "UploadSession")
    Delivery = apps.get_model("delivery", "Delivery")
    open_delivery = Delivery.objects.filter(image__session=OuterRef("pk")).exclude(status__in=["delivered", "failed"])
    ended = UploadSession.objects.filter(closed_at__isnull=False).exclude(Exists(open_delivery))
    for session in ended.only("pk", "last_changed_at").iterator():
        UploadSession.objects.filter(pk=session.pk).update(ended_at=session.last_changed_at)


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0004_image_pull_state"),
        ("delivery", "0003_delivery_waiting_for_slot"),
    ]

    operations = [
        migrations.AddField(
            model_name="uploadsession",
            name="ended_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(mark_ended_sessions, migrations.RunPython.noop),
    ]
