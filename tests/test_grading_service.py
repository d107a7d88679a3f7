"""Grading from the browser, securely: the medai-grading service and the formgrader's Autograde.

On the real hub (``running_hub``), in headless Chromium: the instructor opens the grading page,
grades the lab and sees progress and the result table; a trainee gets 403 on the page and the
API; a POST without the page's XSRF token is refused. A hostile submission (it writes a marker
into the course folder and a table into the gradebook when executed) is autograded from the
formgrader's own button: it must not run in the formgrader, and is graded in a sandbox instead.
Submissions are put into the trainee's drop folder, as ``nbgrader submit`` in their sandbox
does; the exchange keeper receives them. Screenshots go to ``artifacts/<test>/``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sqlite3
import time
from urllib.parse import quote

import nbformat
import pytest

from medai.testing.hub import HubUser

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PAGE = "/services/medai-grading/"
API = PAGE + "api"


def page_url(hub) -> str:
    """The grading page, on the service's own origin."""
    return hub.service_url("medai-grading") + "/"


def service_origin(hub) -> str:
    return hub.service_url("medai-grading")[: -len(PAGE) + 1]


MARKER = "MEDAI-MARKER-formgrader-ran-submitted-code"
XSS = "<img src=x onerror=\"document.title='XSS'\">"

HOSTILE_ANSWER = f"""
import os, sqlite3
# what nbgrader's executor would let this code do inside the formgrader's sandbox
for folder in ("/srv/medai/course", os.environ.get("MEDAI_COURSE_DIR", ""), "."):
    try:
        with open(os.path.join(folder, "{MARKER}"), "w") as fh:
            fh.write("ran")
    except OSError:
        pass
    try:
        db = sqlite3.connect(os.path.join(folder, "gradebook.db"))
        db.execute("CREATE TABLE IF NOT EXISTS pwned (x TEXT)")
        db.commit()
    except sqlite3.Error:
        pass

def double(x):
    raise ValueError({XSS!r})
"""


def login(browser, hub, user: str):
    """Log in and land on the grading page (no JupyterLab server is started)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    # (the hub keeps only the path of a ?next= on another host: log in, then open the page)
    page.goto(hub.url + "/hub/login?next=" + quote("/hub/home"))
    page.fill("#username_input", user)
    page.fill("#password_input", hub.passwords[user])
    with page.expect_navigation(timeout=120_000):
        page.click("#login_submit")
    return ctx, page, page.goto(page_url(hub), timeout=120_000)


def drop(hub, user: str, answer: str) -> str:
    """Submit ``answer`` to the lab's solution cell the way nbgrader submit writes it; wait
    until the exchange keeper has received it; return the received folder's name."""
    course = hub.config.course.id
    released = hub.layout.exchange(course) / "outbound" / "hello" / "hello.ipynb"
    nb = nbformat.read(released, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "double_answer":
            cell.source = answer
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f %Z")
    name = f"{user}+hello+{now}+{os.urandom(4).hex()}"
    d = hub.layout.drop(course, user) / name
    d.mkdir()
    nbformat.write(nb, d / "hello.ipynb")
    (d / "submission_secret.txt").write_text(os.urandom(16).hex())
    (d / "timestamp.txt").write_text(now)
    past = time.time() - 5
    for p in [d, *d.iterdir()]:
        os.utime(p, (past, past))
    inbound = hub.layout.exchange(course) / "inbound" / name
    deadline = time.monotonic() + 60
    while not inbound.is_dir():
        assert time.monotonic() < deadline, "the exchange keeper did not receive the submission"
        time.sleep(0.3)
    return name


def trainee_token(hub, user: str) -> str:
    """An API token the trainee makes for themself on the hub (allowed to every user)."""
    u = HubUser(hub.url, user, hub.passwords[user])
    try:
        r = u.client.post(
            f"/hub/api/users/{user}/tokens",
            json={"note": "trying the grading service"},
            headers={"X-XSRFToken": u._cookie("_xsrf", "/hub/")},
        )
        assert r.status_code == 201, r.text
        return r.json()["token"]
    finally:
        u.close()


def gradebook_tables(hub) -> set[str]:
    db = hub.layout.course_dir(hub.config.course.id) / "gradebook.db"
    with sqlite3.connect(db) as con:
        return {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def markers(hub) -> list[str]:
    return [str(p) for p in hub.layout.root.rglob(MARKER)]


@pytest.fixture(scope="module")
def teacher(browser, running_hub):
    ctx, page, _ = login(browser, running_hub, "teacher")
    yield page
    ctx.close()


def test_instructor_grades_the_lab_and_sees_progress_and_results(
    running_hub, teacher, artifacts_dir
):
    hub, page = running_hub, teacher
    drop(hub, "alice", "def double(x):\n    return 2 * x")

    resp = page.goto(page_url(hub))
    assert resp.status == 200
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    row = page.locator("#labs tr[data-lab='hello']")
    row.wait_for()
    assert int(row.locator("td.received").inner_text()) >= 1
    # keep every state the page shows, to check that progress was shown while it ran
    page.evaluate(
        """() => { window.__states = [];
        new MutationObserver(() => window.__states.push(
            document.getElementById('run-state').textContent)).observe(
            document.getElementById('run-state'), {childList: true, characterData: true,
            subtree: true}); }"""
    )
    row.locator("input.force").check()  # regrade: every collected submission runs again
    row.locator("button.grade-lab").click()
    page.wait_for_selector("#run-state[data-state='collecting']")  # shown at once
    row.locator("button.grade-lab").click()  # a second click shows the running one
    notice = page.locator("#message.notice")
    notice.wait_for()
    assert "already running (started by teacher); showing it" in notice.inner_text()
    page.screenshot(path=artifacts_dir / "1-grading-in-progress.png")
    page.wait_for_selector("#run-state[data-state='done']", timeout=300_000)
    page.screenshot(path=artifacts_dir / "2-results.png")
    states = page.evaluate("window.__states")
    assert any("Collecting submissions of hello" in s for s in states), states
    done = page.locator("#run-state").inner_text()
    m = re.match(r"Done: (\d+) of (\d+) graded in [\d.]+ s", done)
    assert m and m[1] == m[2] and int(m[2]) >= 1, done
    # the progress log: each submission started and finished, counted k of N
    events = page.locator("#run-events li").all_inner_texts()
    assert any(e.endswith("alice: grading in a sandbox") for e in events), events
    n = m[2]
    assert any(re.search(rf"alice: 1 / 1 graded \(\d of {n} done\)$", e) for e in events), events
    assert any(e.endswith(f"({n} of {n} done)") for e in events), events
    alice = page.locator("#results tr[data-student='alice']")
    assert alice.locator("td.score").inner_text() == "1"
    assert alice.locator("td.max").inner_text() == "1"
    assert alice.locator("td.status").inner_text() == "graded"
    assert alice.locator("td.now").inner_text() == "graded"
    # one student, from the same page
    row.locator("select.student").select_option("alice")
    row.locator("button.grade-one").click()
    page.wait_for_selector("#run-title:has-text('· hello · alice')")
    page.wait_for_selector("#run-state[data-state='done']", timeout=300_000)
    assert page.locator("#results tr[data-student='alice'] td.score").inner_text() == "1"
    assert page.locator("#results tbody tr").count() == 1
    # the same result as `medai grade` writes: gradebook and result file
    result = json.loads(
        (
            hub.layout.course_dir(hub.config.course.id) / "grading/hello/results/alice.json"
        ).read_text()
    )
    assert result["auto_score"] == 1.0 and result["status"] == "graded"


def test_trainee_gets_403_on_the_page_and_the_api(browser, running_hub, artifacts_dir):
    hub = running_hub
    ctx, page, landed = login(browser, hub, "alice")
    assert landed.status == 403  # the hub refuses her the service at its OAuth step
    resp = page.goto(page_url(hub))
    assert resp.status == 403
    page.screenshot(path=artifacts_dir / "trainee-403.png")
    ctx.close()

    token = trainee_token(hub, "alice")
    from medai.testing.hub import loopback_client, origins_of

    origins = origins_of(hub.url)
    auth = {"Authorization": f"token {token}"}
    with loopback_client(origins, base_url=service_origin(hub), headers=auth) as c:
        for method, path in (("GET", "/labs"), ("POST", "/labs/hello/grade"), ("GET", "/runs/x")):
            r = c.request(method, API + path, json={} if method == "POST" else None)
            assert r.status_code == 403, (method, path, r.status_code, r.text)
            assert "only the course's instructors and TAs" in r.json()["error"]
    with loopback_client(origins, base_url=service_origin(hub)) as anonymous:
        r = anonymous.post(API + "/labs/hello/grade", json={})
        assert r.status_code == 403  # no redirect to a login page for an API


def test_a_post_without_the_xsrf_token_is_refused(running_hub, teacher):
    hub, page = running_hub, teacher
    page.goto(page_url(hub))
    page.locator("#labs tr[data-lab='hello']").wait_for()
    # from the page itself, with the instructor's cookies, but without the token
    reply = page.evaluate(
        """async (url) => { const r = await fetch(url, {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json'}, body: '{}'});
            return {status: r.status, body: await r.json()}; }""",
        service_origin(hub) + API + "/labs/hello/grade",
    )
    assert reply["status"] == 403 and "XSRF token" in reply["body"]["error"], reply
    # a forged token is no better
    status = page.evaluate(
        """async (url) => (await fetch(url, {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json', 'X-XSRFToken': 'forged'},
            body: '{}'})).status""",
        service_origin(hub) + API + "/labs/hello/grade",
    )
    assert status == 403
    # with the page's token the same request is served (the run may already be going)
    token = page.locator("meta[name='medai-xsrf']").get_attribute("content")
    reply = page.evaluate(
        """async ([url, token]) => {
            const r = await fetch(url, {method: 'POST', credentials: 'same-origin',
                headers: {'Content-Type': 'application/json', 'X-XSRFToken': token},
                body: '{}'});
            return {status: r.status, body: await r.json()}; }""",
        [service_origin(hub) + API + "/labs/hello/grade", token],
    )
    assert reply["status"] in (200, 202), reply
    run = reply["body"]["run"]
    deadline = time.monotonic() + 300
    while run["active"]:  # let it finish: the next test wants the lab to itself
        assert time.monotonic() < deadline
        time.sleep(1)
        run = page.evaluate(
            """async ([url, token]) => (await (await fetch(url,
                {headers: {'X-XSRFToken': token}})).json()).run""",
            [f"{service_origin(hub)}{API}/runs/{run['id']}", token],
        )
    assert run["state"] == "done", run


def test_formgrader_autograde_does_not_run_submitted_code(running_hub, teacher, artifacts_dir):
    hub, page = running_hub, teacher
    course = hub.config.course.id
    cdir = hub.layout.course_dir(course)
    tables_before = gradebook_tables(hub)
    drop(hub, "bob", HOSTILE_ANSWER)

    # the instructor collects and autogrades from the formgrader, as any nbgrader user would
    fg = f"{hub.service_url(course)}/formgrader"
    page.goto(fg)
    # the formgrader fills its table from its API: give a loaded machine time
    page.wait_for_selector("#main-table td.collect a", timeout=180_000)
    page.click("#main-table td.collect a")
    page.wait_for_selector(".modal-dialog", timeout=60_000)
    page.goto(f"{fg}/manage_submissions/hello")
    row = page.locator("#main-table tr", has=page.locator("td.student-id", has_text="bob"))
    row.wait_for(timeout=60_000)
    row.locator("td.autograde a").click()
    modal = page.locator(".modal-dialog")
    modal.wait_for(timeout=600_000)
    page.screenshot(path=artifacts_dir / "1-formgrader-autograde.png")
    text = modal.inner_text()

    assert markers(hub) == [], "the submission's code ran in the formgrader"
    assert "pwned" not in gradebook_tables(hub) and gradebook_tables(hub) == tables_before
    # ... and it was graded securely instead, in a sandbox, by the grading service
    assert "Graded by the secure grading service" in text, text
    assert "bob: 0 / 1 (graded)" in text, text
    result = json.loads((cdir / "grading/hello/results/bob.json").read_text())
    assert result["status"] == "graded" and result["sandbox"]["status"] == "ok"
    autograded = (cdir / "autograded/bob/hello/hello.ipynb").read_text()
    assert "[double] 0 / 1 points" in autograded  # the secure grader's output, not nbgrader's

    # nbgrader's Validate (JupyterLab toolbar) on the submission is refused in the formgrader
    validate = page.evaluate(
        """async ([url, xsrf]) => (await fetch(url, {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json', 'X-XSRFToken': xsrf},
            body: JSON.stringify({path: 'submitted/bob/hello/hello.ipynb'})})).text()""",
        [
            f"{hub.service_url(course)}/assignments/validate",
            next(
                c["value"]
                for c in page.context.cookies()
                if c["name"] == "_xsrf" and c["path"].startswith(f"/services/{course}")
            ),
        ],
    )
    assert "validates only the course's source notebooks" in validate, validate
    assert markers(hub) == []

    # the hostile message is shown as text on the grading page, never run as HTML
    page.goto(page_url(hub))
    page.locator("#labs tr[data-lab='hello'] button.show-results").click()
    bob = page.locator("#results tr[data-student='bob']")
    bob.wait_for()
    assert XSS in bob.locator("td.messages").inner_text()
    assert page.locator("#results img").count() == 0 and page.title() != "XSS"
    page.screenshot(path=artifacts_dir / "2-hostile-message-as-text.png")


def test_a_failed_run_is_reported_in_the_page(running_hub, teacher, tmp_path):
    """A link planted in the course folder (from the formgrader's sandbox, say) stops the run;
    the page says what and where."""
    hub, page = running_hub, teacher
    results = hub.layout.course_dir(hub.config.course.id) / "grading" / "hello" / "results"
    results.mkdir(parents=True, exist_ok=True)
    planted = results / "zz-planted.json"
    planted.symlink_to(tmp_path / "outside.json")
    try:
        page.goto(page_url(hub))
        row = page.locator("#labs tr[data-lab='hello']")
        row.wait_for()
        row.locator("button.grade-lab").click()
        page.wait_for_selector("#run-state[data-state='failed']", timeout=120_000)
        error = page.locator("#run-error").inner_text()
        assert f"{planted} is a symbolic link" in error and "Remove it" in error, error
        assert not (tmp_path / "outside.json").exists()
    finally:
        planted.unlink()
