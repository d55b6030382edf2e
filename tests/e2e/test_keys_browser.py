"""A project's API keys in a real browser (Chromium) against the real site: an owner makes a key, copies it from
the one page that shows it, and the key works; it is not shown again."""

import httpx

from projects.models import ApiKey
from tests.e2e.conftest import make_owner, sign_in


def test_an_owner_makes_a_key_sees_it_once_and_it_works(site, page):
    make_owner()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.url)
    sign_in(page, site.url)
    page.get_by_role("link", name="Claims").click()
    page.get_by_role("link", name="API keys").click()

    page.get_by_label("Label").fill("Claims backend")
    page.get_by_role("button", name="Create key").click()
    plain = page.locator("#new-key").text_content()
    page.get_by_role("button", name="Copy").first.click()
    page.get_by_role("button", name="Copied").wait_for()
    copied = page.evaluate("navigator.clipboard.readText()")
    page.reload()

    assert plain.startswith("aptr_live_") and copied == plain
    assert page.locator("#new-key").count() == 0 and plain not in page.content()
    assert page.get_by_text(plain[:14]).count() == 1  # its prefix, in the list
    answer = httpx.get(f"{site.url}/api/v1/stats", headers={"Authorization": f"Bearer {plain}"}, timeout=10)
    assert answer.status_code == 200 and answer.json()["activeKeys"] == 2

    page.get_by_role("link", name=f"Edit key {plain[:14]}").click()
    page.get_by_label("Photos per session").fill("12")
    page.get_by_role("button", name="Save key").click()
    page.get_by_text("is saved").wait_for()
    page.get_by_text("12 photos per session").wait_for()
    assert ApiKey.objects.get(prefix=plain[:14]).max_images == 12
