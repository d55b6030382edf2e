"""Browser tests: Debian's Chromium driven by Playwright (browsers cannot be downloaded here), headless, against
the real site (`manage.py apertur_run`: web server and embedded worker) on the test database."""

import os

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from projects.services import bootstrap
from tests.conftest import ServerProcess
from tests.e2e.chromium import CHROMIUM, CHROMIUM_ARGUMENTS

OWNER_EMAIL = "owner@example.test"
PASSWORD = "correct horse battery"

# A mid-range Android phone.
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
    "user_agent": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/156.0.0.0 Mobile Safari/537.36"
    ),
}


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: `make install-test` installs Debian's chromium package (apt-get).")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread, which Django takes for async code and refuses
    # database calls from; the tests' own ORM calls (fixtures, assertions) are plain synchronous code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGUMENTS)
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def phone(chromium):
    """A fresh phone-sized browser context. `page.problems` collects uncaught script errors and what the
    Content-Security-Policy refused (a refused upload's HTTP status is logged too, and is not a problem)."""
    context = chromium.new_context(**PHONE)
    context.set_default_timeout(20_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: "Refused to" in message.text and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.problems = problems
    yield page
    context.close()


@pytest.fixture
def site(transactional_db, tmp_path):
    """The site with its worker; journeys that need settings of their own define their own `site`."""
    server = ServerProcess(with_worker=True, log_path=tmp_path / "server.log")
    yield server
    server.stop()


@pytest.fixture
def page(chromium):
    """A fresh desktop-sized browser context's page (the dashboard journeys'); `page.problems` collects uncaught
    script errors."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.problems = problems
    yield page
    context.close()


def make_owner(*, project_name: str = "Claims"):
    """The project's owner, as `bootstrap` makes an operator's first account (returns what it returns), with a
    password the server can check: hashed as the server hashes (the tests' own settings use a fast hasher the
    server does not know)."""
    made = bootstrap(email=OWNER_EMAIL, password=PASSWORD, project_name=project_name)
    hashed = PBKDF2PasswordHasher().encode(PASSWORD, PBKDF2PasswordHasher().salt())
    get_user_model().objects.filter(email=OWNER_EMAIL).update(password=hashed)
    return made


def sign_in(page, site_url: str, email: str = OWNER_EMAIL) -> None:
    page.goto(f"{site_url}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
