"""The built course site in headless Chromium, with every request outside localhost blocked.

The site is the repository's own (courses/, datasets/synthetic/, every lab in labs/), plus the
example lab so there is always a lab page with mathematics to open.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from medai.site.build import SitePaths, build_site
from medai.site.serve import serve_in_thread
from medai.testing import example_lab as ex

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def served_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-site")
    labs = root / "labs"
    shutil.copytree(REPO / "labs", labs, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    ex.write_example_lab(labs, lab_id="zz-example", title="Example lab with mathematics")
    result = build_site(root / "site", SitePaths(labs=labs))
    server, base = serve_in_thread(result.out)
    yield base
    server.shutdown()
    server.server_close()


@pytest.mark.browser
def test_reader_journey_offline(served_site, artifacts_dir, browser):
    from playwright.sync_api import expect

    base = served_site
    blocked: list[str] = []
    failed: list[str] = []
    console_errors: list[str] = []

    def guard(route):
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    # the session's Chromium (tests/conftest.py): one Playwright per process
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    context.route("**/*", guard)
    page = context.new_page()
    page.on("requestfailed", lambda r: failed.append(f"{r.url} {r.failure}"))
    page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
    page.on("pageerror", lambda e: console_errors.append(str(e)))

    # 1. home page
    page.goto(base, wait_until="networkidle")
    expect(page).to_have_title("MedAI Lab")
    expect(page.locator("h1")).to_contain_text("MedAI Lab")
    page.screenshot(path=artifacts_dir / "1-home.png", full_page=True)

    # 2. follow the navigation to the Labs section, then to a lab page
    page.locator("nav.md-nav--primary a.md-nav__link", has_text="Labs").first.click()
    page.wait_for_load_state("networkidle")
    expect(page.locator("h1")).to_contain_text("Labs")
    page.get_by_role("link", name="Example lab with mathematics").last.click()
    page.wait_for_load_state("networkidle")
    expect(page.locator("h1")).to_contain_text("Example lab with mathematics")
    expect(page.get_by_role("link", name="Download zz-example.ipynb")).to_be_visible()
    expect(page.locator(".katex").first).to_be_visible()  # KaTeX rendered offline
    expect(page.get_by_role("button", name="Copy to clipboard").first).to_be_attached()
    page.screenshot(path=artifacts_dir / "2-lab.png", full_page=True)
    download = page.request.get(
        page.get_by_role("link", name="Download zz-example.ipynb").evaluate("a => a.href")
    )
    assert download.ok and b"NotImplementedError" in download.body()
    assert b"example-solution-line" not in download.body()

    # 3. search
    search = page.locator("input.md-search__input")
    search.click()
    search.press_sequentially("formgrader", delay=20)
    results = page.locator(".md-search-result__item")
    expect(results.first).to_be_visible(timeout=10_000)
    assert results.count() >= 1
    page.screenshot(path=artifacts_dir / "3-search.png")
    page.keyboard.press("Escape")

    # 4. switch the palette (light -> dark)
    body = page.locator("body")
    expect(body).to_have_attribute("data-md-color-scheme", "default")
    page.locator("form[data-md-component=palette] label:not([hidden])").first.click()
    expect(body).to_have_attribute("data-md-color-scheme", "slate")
    page.screenshot(path=artifacts_dir / "4-dark.png", full_page=True)
    context.close()

    assert blocked == [], f"requests outside localhost: {blocked}"
    assert failed == [], f"failed requests: {failed}"
    assert console_errors == [], f"console errors: {console_errors}"
