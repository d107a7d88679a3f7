"""End to end, in headless Chromium, through the real proxy: trainee and instructor journeys.

alice logs in, JupyterLab loads, she fetches the lab from the Assignments panel, edits and saves
the notebook, and submits; bob cannot see her submission; alice gets 403 on the formgrader; the
instructor opens the formgrader in its own tab, collects, and sees alice's submission.
Screenshots go to ``artifacts/<test>/``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medai.testing.browser import log_in

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def login(browser, hub, user: str):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    page.goto(hub.url + "/hub/login")
    log_in(page, user, hub.passwords[user])
    return ctx, page


def fetch_json(page, url: str):
    """GET ``url`` from inside the page, as JupyterLab's own script does (same origin, its
    cookies, and the XSRF header Jupyter requires of script requests)."""
    return page.evaluate(
        """async (u) => {
          const m = document.cookie.match(/(?:^|; )_xsrf=([^;]*)/);
          const h = m ? {"X-XSRFToken": decodeURIComponent(m[1])} : {};
          const r = await fetch(u, {headers: h});
          return await r.json();
        }""",
        url,
    )


def open_assignment_list(page):
    page.click("text=Nbgrader")
    page.click("text=Assignment List")
    page.wait_for_selector("#released_assignments_list")


def test_trainee_fetches_edits_submits_and_instructor_sees_it(browser, running_hub, artifacts_dir):
    hub = running_hub
    course = hub.config.course.id

    # --- alice: login -> JupyterLab --------------------------------------------------------
    ctx, page = login(browser, hub, "alice")
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    alice_url = hub.server_url("alice")  # her own origin: http://alice.localhost:PORT
    assert page.url.startswith(f"{alice_url}/lab")
    page.screenshot(path=artifacts_dir / "1-alice-jupyterlab.png")

    # --- fetch from the Assignments panel --------------------------------------------------
    open_assignment_list(page)
    row = page.locator("#released_assignments_list .list_item", has_text="hello")
    row.locator("button", has_text="Fetch").click()
    page.locator("#fetched_assignments_list .list_item", has_text="hello").first.wait_for(
        timeout=60_000
    )
    page.screenshot(path=artifacts_dir / "2-alice-fetched.png")

    # --- edit the notebook in the editor and save ------------------------------------------
    page.goto(f"{alice_url}/lab/tree/{course}/hello/hello.ipynb")
    cell = page.locator(".jp-CodeCell .cm-content", has_text="NotImplementedError").first
    cell.wait_for(timeout=60_000)
    cell.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text("def double(x):\n    return 2 * x")  # as pasted: no auto-indent
    # the edit is in the editor before it is saved (a busy machine may still be opening it)
    page.locator(".jp-CodeCell .cm-content", has_text="return 2 * x").first.wait_for(timeout=60_000)
    deadline = time.monotonic() + 60
    saved, press_at = "", 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= press_at:  # again every 5 s: a press may come before the save hook
            page.keyboard.press("Control+S")
            press_at = time.monotonic() + 5
        r = fetch_json(page, f"{alice_url}/api/contents/{course}/hello/hello.ipynb?content=1")
        saved = json.dumps(r.get("content", {}))
        if "return 2 * x" in saved:
            break
        time.sleep(0.5)
    if "return 2 * x" not in saved:
        page.screenshot(path=artifacts_dir / "3-alice-not-saved.png")
    assert "return 2 * x" in saved
    page.screenshot(path=artifacts_dir / "3-alice-edited.png")

    # --- submit from the Assignments panel -------------------------------------------------
    page.goto(f"{alice_url}/lab")
    page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
    open_assignment_list(page)
    fetched = page.locator("#fetched_assignments_list .list_item", has_text="hello").first
    fetched.locator("button", has_text="Submit").click()
    page.locator("#submitted_assignments_list .list_item", has_text="hello").first.wait_for(
        timeout=60_000
    )
    page.screenshot(path=artifacts_dir / "4-alice-submitted.png")

    # The server received it (trusted inbound, server-side time).
    inbound = hub.layout.exchange(course) / "inbound"
    deadline = time.monotonic() + 30
    received = []
    while time.monotonic() < deadline and not received:
        received = [p for p in inbound.glob("alice+hello+*") if "early" not in p.name]
        time.sleep(0.5)
    assert received, "submission did not reach the server's inbound"
    assert "return 2 * x" in (received[0] / "hello.ipynb").read_text()

    # --- alice is refused the formgrader ---------------------------------------------------
    formgrader = hub.service_url(course) + "/formgrader"
    resp = page.goto(formgrader)
    assert resp.status == 403
    page.screenshot(path=artifacts_dir / "5-alice-formgrader-403.png")
    ctx.close()

    # --- bob cannot see alice's submission -------------------------------------------------
    ctx, page = login(browser, hub, "bob")
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    open_assignment_list(page)
    page.locator("#released_assignments_list .list_item", has_text="hello").wait_for()
    submitted = page.locator("#submitted_assignments_list .list_item")
    assert submitted.count() == 0
    listing = fetch_json(page, f"{hub.server_url('bob')}/assignments?course_id={course}")
    assert "alice" not in json.dumps(listing)
    page.screenshot(path=artifacts_dir / "6-bob-sees-no-submission.png")
    ctx.close()

    # --- the instructor collects and sees the submission in the formgrader -----------------
    ctx, page = login(browser, hub, "teacher")
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    resp = page.goto(formgrader)
    assert resp.status == 200
    page.wait_for_selector("#main-table td.collect a", timeout=180_000)  # a loaded machine
    page.screenshot(path=artifacts_dir / "7-instructor-formgrader.png")
    page.click("#main-table td.collect a")
    page.wait_for_timeout(500)
    # nbgrader shows the collect log in a modal; close it and reload the table
    page.goto(f"{formgrader}/manage_submissions/hello")
    page.wait_for_selector("text=alice", timeout=60_000)
    assert re.search(r"alice", page.content())
    page.screenshot(path=artifacts_dir / "8-instructor-sees-submission.png")
    ctx.close()

    # --- feedback: graded and released by the instructor, fetched by alice only -------------
    cdir = hub.layout.course_dir(course)
    exchange = f"--Exchange.root={hub.layout.root / 'exchange'}"
    bindir = Path(sys.executable).parent
    for cmd in (
        [bindir / "medai", "grade", "hello", "--course", cdir, "--data", hub.layout.data],
        [bindir / "nbgrader", "generate_feedback", "hello", "--force"],
        [bindir / "nbgrader", "release_feedback", "hello", exchange],
    ):
        res = subprocess.run([str(c) for c in cmd], cwd=cdir, capture_output=True, text=True)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    mine = hub.layout.user_feedback(course, "alice")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list(mine.glob("*.html")):
        time.sleep(0.5)
    assert list(mine.glob("*.html")), "feedback did not reach alice's feedback folder"
    # bob may have feedback of his own (other tests submit for him), never alice's
    bobs = {f.name for f in hub.layout.user_feedback(course, "bob").glob("*.html")}
    assert not bobs & {f.name for f in mine.glob("*.html")}
    ctx2, page2 = login(browser, hub, "alice")
    page2.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    open_assignment_list(page2)
    row = page2.locator("#submitted_assignments_list .list_item", has_text="hello").first
    row.locator("button", has_text="Fetch Feedback").click()
    deadline = time.monotonic() + 60
    fetched = []
    while time.monotonic() < deadline and not fetched:
        fetched = list(
            (hub.layout.home("alice") / course / "hello" / "feedback").glob("*/hello.html")
        )
        time.sleep(0.5)
    assert fetched, "alice could not fetch her feedback"
    feedback = fetched[0].read_text()
    assert "Score: 1.0 / 1.0" in feedback  # her edited answer was graded correct
    assert "BEGIN HIDDEN TESTS" not in feedback
    page2.goto(f"{alice_url}/files/{fetched[0].relative_to(hub.layout.home('alice'))}")
    page2.screenshot(path=artifacts_dir / "9-alice-reads-feedback.png")
    ctx2.close()

    # The TA may open the formgrader too.
    ctx, page = login(browser, hub, "helper")
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    assert page.goto(formgrader).status == 200
    ctx.close()


def test_trainee_switches_jupyterlab_to_simplified_chinese(browser, running_hub, artifacts_dir):
    ctx, page = login(browser, running_hub, "bob")
    page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
    packs = fetch_json(page, f"{running_hub.server_url('bob')}/lab/api/translations")
    assert "zh_CN" in packs["data"], packs
    page.click("text=Settings")
    page.click(".lm-Menu-itemLabel:text-is('Language')")
    page.click(".lm-Menu-itemLabel:has-text('中文')")
    page.click(".jp-Dialog-button.jp-mod-accept")
    page.wait_for_selector(".lm-MenuBar-itemLabel:text-is('文件')", timeout=120_000)
    page.screenshot(path=artifacts_dir / "jupyterlab-zh-cn.png")
    ctx.close()
