"""Accounts made before the accounts' sign-in (docs/configuration.md "Accounts") were made by an operator (the
admin, `createsuperuser`, `apertur_bootstrap`, the demo seed): their addresses count as confirmed, so they sign in
by email at once instead of waiting for a confirmation mail."""

from django.conf import settings
from django.db import migrations


def confirm_existing_addresses(apps, schema_editor) -> None:
    user_model = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    email_address = apps.get_model("account", "EmailAddress")
    known_users = set(email_address.objects.values_list("user_id", flat=True))
    taken = {address.lower() for address in email_address.objects.values_list("email", flat=True)}
    confirmed = []
    for user in user_model.objects.exclude(email="").order_by("pk").only("pk", "email"):
        # An address two old accounts share is confirmed for the first only (addresses are unique now).
        if user.pk in known_users or user.email.lower() in taken:
            continue
        taken.add(user.email.lower())
        confirmed.append(email_address(user_id=user.pk, email=user.email, verified=True, primary=True))
    email_address.objects.bulk_create(confirmed)


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0001_initial"),
        ("account", "0009_emailaddress_unique_primary_email"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(confirm_existing_addresses, migrations.RunPython.noop)]
