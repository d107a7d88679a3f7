"""The headless Chromium that browser tests and benchmarks drive through Playwright."""

from __future__ import annotations

from typing import Any

CHROMIUM = "/usr/bin/chromium"  # Debian's; CI installs the same package
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def launch_chromium(playwright: Any) -> Any:
    """Start Debian's Chromium headless with :data:`CHROMIUM_ARGS` (a Playwright ``Browser``)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def log_in(page: Any, user: str, password: str) -> None:
    """Fill in the hub's login form on ``page`` (open at ``/hub/login``) and send it."""
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")
