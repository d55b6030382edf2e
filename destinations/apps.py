from django.apps import AppConfig


class DestinationsConfig(AppConfig):
    name = "destinations"
    default_auto_field = "django.db.models.BigAutoField"
