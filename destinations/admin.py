from django.contrib import admin

from destinations.models import Destination


@admin.register(Destination)
class DestinationAdmin(admin.ModelAdmin):
    list_display = ["name", "type", "project", "is_active", "needs_reconnect", "last_delivery_at", "deleted_at"]
    list_filter = ["type", "is_active", "needs_reconnect"]
    list_select_related = ["project"]
    exclude = ["secrets"]  # encrypted at rest and never shown; change them through the API or dashboard
    readonly_fields = ["last_delivery_at", "last_error", "needs_reconnect", "deleted_at"]
