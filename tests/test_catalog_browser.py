"""The catalogue in JupyterLab, in headless Chromium through the real proxy: a trainee finds it
in her file browser, reads a model card, and cannot change it: JupyterLab refuses the save, a
script in the page that sends the save itself gets an error, and the file on the host stays as
it was."""

from __future__ import annotations

import pytest

from tests.test_hub_e2e import login

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def test_trainee_reads_the_catalogue_in_jupyterlab_and_cannot_save_into_it(
    browser, running_hub, artifacts_dir
):
    card = running_hub.layout.models / "stroke-risk-logistic" / "card.md"
    before = card.read_bytes()
    ctx, page = login(browser, running_hub, "mallory")
    try:
        page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
        listing = page.locator(".jp-DirListing-itemText", has_text="catalog")
        listing.first.wait_for(timeout=60_000)
        server = running_hub.server_url("mallory")
        page.goto(f"{server}/lab/tree/catalog/models/stroke-risk-logistic/card.md")
        editor = page.locator(".jp-FileEditor .cm-content")
        editor.wait_for(timeout=60_000)
        page.get_by_text("Metrics by subgroup").first.wait_for(timeout=30_000)
        page.screenshot(path=artifacts_dir / "catalogue-card-in-jupyterlab.png")
        page.get_by_text("file is read-only").wait_for(timeout=30_000)  # JupyterLab knows
        editor.click()
        page.keyboard.press("Control+End")
        page.keyboard.insert_text("\nAUROC 0.99 for everyone\n")
        page.keyboard.press("Control+s")
        page.get_by_text("is read-only").last.wait_for(timeout=30_000)  # the save is refused
        page.screenshot(path=artifacts_dir / "catalogue-save-refused.png")
        # ... and going round JupyterLab's own check, as a script in the page can:
        status = page.evaluate(
            """async (u) => {
              const m = document.cookie.match(/(?:^|; )_xsrf=([^;]*)/);
              const h = {"Content-Type": "application/json"};
              if (m) h["X-XSRFToken"] = decodeURIComponent(m[1]);
              const body = JSON.stringify({type: "file", format: "text", content: "forged"});
              const r = await fetch(u, {method: "PUT", headers: h, body});
              return r.status;
            }""",
            f"{server}/api/contents/catalog/models/stroke-risk-logistic/card.md",
        )
        assert status >= 400, status
    finally:
        ctx.close()
    assert card.read_bytes() == before
