from django.contrib import admin

from sessions_app.models import Image, UploadSession


class ImageInline(admin.TabularInline):
    model = Image
    extra = 0
    fields = ["id", "index", "filename", "mime_type", "size_bytes", "sha256", "created_at", "acknowledged_at"]
    readonly_fields = fields
    can_delete = False


@admin.register(UploadSession)
class UploadSessionAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "status", "images_count", "max_images", "expires_at", "created_at"]
    list_filter = ["status", "env"]
    list_select_related = ["project"]
    exclude = ["password_hash"]
    raw_id_fields = ["project", "api_key", "destinations"]
    readonly_fields = ["images_count", "status", "closed_at", "close_reason", "last_changed_at"]
    inlines = [ImageInline]


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "session", "index", "filename", "mime_type", "size_bytes", "created_at"]
    list_select_related = ["session"]
    search_fields = ["id", "session__id", "sha256"]
    raw_id_fields = ["session"]
