"""The console in a real browser (Debian's chromium, tests/conftest.py `browser`, one per
module) against pytest-django's live server: a page fixture and the people's steps (accept an
invitation, enrol the authenticator, sign in) for every console browser journey to build on.
Each page collects the Content-Security-Policy violations the browser reports, so a journey
can assert the policy never got in the way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.console.people import PASSWORD, code_from_secret


@pytest.fixture
def console_page(browser: Any, live_server: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) on the live server; `page.csp_violations` lists
    what the browser refused under the policy."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.csp_violations = []
    page.on(
        "console",
        lambda message: (
            page.csp_violations.append(message.text)
            if "Content Security Policy" in message.text
            else None
        ),
    )
    yield page
    context.close()


def path_of(url: str) -> str:
    """The path of an invitation link (made with CONSOLE_BASE_URL, not the live server's)."""
    return "/console/" + url.split("/console/", 1)[1]


def accept_invitation(page: Any, url: str, password: str = PASSWORD) -> list[str]:
    """Opens the link, chooses the password and enrols the authenticator with the code
    computed from the key the page shows. Returns the key (for later sign-ins' codes) followed
    by the ten recovery codes, and leaves the page on the recovery codes."""
    page.goto(path_of(url))
    page.fill("#id_password1", password)
    page.fill("#id_password2", password)
    page.click("#invitation-accept-form button[type=submit]")
    secret = enrol(page)
    codes = page.locator("#recovery-codes code").all_inner_texts()
    return [secret, *codes]


def enrol(page: Any) -> str:
    """On the enrolment page: types in the code for the key shown; returns the key."""
    page.wait_for_selector("#console-2fa-enrol-form")
    assert page.locator("#console-2fa-qr svg").is_visible()
    secret = page.locator("#console-2fa-secret").inner_text()
    page.fill("#console-2fa-enrol-form input[name=code]", code_from_secret(secret))
    page.click("#console-2fa-enrol-form button[type=submit]")
    page.wait_for_selector("#recovery-codes")
    return secret


def sign_in(
    page: Any, email: str, secret: str, *, password: str = PASSWORD, steps_ahead: int = 1
) -> None:
    """Both steps of the sign-in. A code is accepted once, so a sign-in within the time step
    of the enrolment uses the next step's code (the default)."""
    page.goto("/console/sign-in/")
    page.fill("#id_email", email)
    page.fill("#id_password", password)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#second-factor-form")
    page.fill("#second-factor-form input[name=code]", code_from_secret(secret, steps_ahead))
    page.click("#second-factor-form button[type=submit]")
    page.wait_for_selector("main h1")


def sign_out(page: Any) -> None:
    page.click(".person form button[type=submit]")
    page.wait_for_selector("#sign-in-form")
