"""Template helpers shared by the dashboard's pages (docs/dashboard.md)."""

from django import template
from django.utils.html import format_html

register = template.Library()


@register.simple_tag(takes_context=True)
def nav_link(context: template.Context, url: str, label: str, *, exact: bool = False) -> str:
    """A tab of the project nav, marked as the current page for its own address and (unless `exact`) the pages
    under it."""
    path = context["request"].path if "request" in context else ""
    current = path == url or (not exact and path.startswith(url.rstrip("/") + "/"))
    if current:
        return format_html('<a href="{}" aria-current="page">{}</a>', url, label)
    return format_html('<a href="{}">{}</a>', url, label)
