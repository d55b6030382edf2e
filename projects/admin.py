from django.contrib import admin

from projects.models import ApiKey, Membership, Project


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "label", "project", "env", "is_active", "last_used_at"]
    list_filter = ["env", "is_active"]
    list_select_related = ["project"]
    # The digest is useless to a reader and the signing secret must never be shown.
    exclude = ["digest", "signing_secret"]
    readonly_fields = ["prefix", "last_used_at"]
    raw_id_fields = ["project", "default_destinations"]
