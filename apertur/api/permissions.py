from rest_framework.permissions import BasePermission

from apertur.api.authentication import KeyPrincipal


class HasApiKey(BasePermission):
    message = "An API key is required: send Authorization: Bearer aptr_…"

    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, KeyPrincipal)
