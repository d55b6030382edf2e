from django.contrib import admin

from projects.models import ApiKey, Invitation, Membership, Project


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


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    """Invitations can be read and withdrawn (deleted) here; they are made on the members page, which mails the link
    (the digest alone cannot be turned back into one)."""

    list_display = ["email", "project", "role", "created_at", "expires_at", "accepted_at"]
    list_select_related = ["project"]
    search_fields = ["email"]
    exclude = ["digest"]
    readonly_fields = ["project", "email", "role", "invited_by", "expires_at", "accepted_at", "accepted_by"]

    def has_add_permission(self, request) -> bool:
        return False
