"""Who may call a `K` endpoint (docs/api.md "Authentication", "Dashboard access")."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from apertur.api.authentication import DashboardPrincipal, KeyPrincipal
from apertur.errors import AppError
from projects.models import Membership


class HasApiKey(BasePermission):
    """An API key, or a signed-in member of the project the request names.

    A key may do everything in its project. A dashboard user may read everything in theirs; writes need a role in
    the view's `dashboard_write_roles` (owners and admins unless the view says otherwise: docs/api.md
    "Dashboard access").
    """

    message = "An API key is required: send Authorization: Bearer aptr_…"

    def has_permission(self, request, view) -> bool:
        principal = request.user
        if isinstance(principal, KeyPrincipal):
            return True
        if not isinstance(principal, DashboardPrincipal):
            return False
        if request.method in SAFE_METHODS:
            return True
        roles = getattr(view, "dashboard_write_roles", Membership.MANAGING_ROLES)
        if principal.membership.role not in roles:
            raise AppError(
                403, "FORBIDDEN", "Your role in this project may not do this: ask one of its owners or admins."
            )
        return True
