from django.contrib import admin

from delivery.models import Delivery, DeliveryAttempt


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    readonly_fields = ["number", "started_at", "finished_at", "duration_ms", "outcome", "error", "http_status"]
    can_delete = False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "image", "destination", "status", "attempts", "next_retry_at", "delivered_at"]
    list_filter = ["status"]
    list_select_related = ["image", "destination"]
    # State changes go through the delivery service (the API's retry); the admin only shows them.
    readonly_fields = [
        "image",
        "destination",
        "status",
        "attempts",
        "next_retry_at",
        "lease_expires_at",
        "enqueued_at",
        "last_error",
        "remote_reference",
        "delivered_at",
    ]
    inlines = [DeliveryAttemptInline]
