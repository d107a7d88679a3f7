"""Staff pages in Chromium: a hostile submission runs no script in any view an instructor opens.

mallory (a trainee) fetches the hello lab in her own server and submits a notebook with script
in a markdown answer (``<script>``, ``<img onerror>``, ``<svg onload>``, ``javascript:`` links,
an ``srcdoc`` frame, an mXSS shape) and in rich outputs (text/html, application/javascript,
text/markdown, SVG). The instructor collects and grades it with ``medai grade``; since that
grader keeps only text outputs, the test then writes the hostile rich outputs into the autograded
notebook, as nbgrader's own autograde would have kept them. Then ``teacher`` opens, in Chromium,
every view that shows it: the manual grading page, the submission lists, the autograded
notebook in the formgrader's JupyterLab, its nbconvert view, and the generated feedback.

Each payload, if it ran, would mark the page (``window.__pwned``, the title), request
``/pwned/<name>``, and create an API token for the instructor through the hub API (the attack of
issue 9, finding 1). The test checks none of that happened, that each page sent a policy that
forbids inline script, and that the manual grading page holds no executable markup at all.
It also checks the formgrader works offline: no request leaves the machine and MathJax, served
by the formgrader itself, typesets the answer's formula.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import nbformat
import pytest

from medai.testing.browser import log_in
from medai.testing.hub import HubUser, tokens_with_note
from tests.adversarial.hostile_html import hostile_notebook, hostile_outputs, js

pytestmark = [pytest.mark.slow, pytest.mark.browser]

COURSE = "hubtest"
BIN = Path(sys.executable).parent

# Watches every frame of every page for policy violations (kept as artifacts for the reader).
WATCH_CSP = """
document.addEventListener('securitypolicyviolation', function (e) {
  var w = window; try { w = window.top; w.__csp = w.__csp || []; } catch (x) { w = window; }
  (w.__csp = w.__csp || []).push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


def run(cmd: list, cwd: Path) -> None:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def pwned_tokens(layout) -> int:
    """API tokens with the payload's note, in the hub's own database."""
    return tokens_with_note(layout.hub, "pwned")


@pytest.fixture(scope="module")
def submission(running_hub):
    """mallory's hostile submission, collected, graded and with feedback; its gradebook id."""
    hub = running_hub
    layout = hub.layout
    released = nbformat.read(layout.exchange(COURSE) / "outbound" / "hello" / "hello.ipynb", 4)
    hostile = hostile_notebook(released, hub=hub.url)
    mallory = HubUser(hub.url, "mallory", hub.passwords["mallory"])
    mallory.start_server()
    code = textwrap.dedent(
        f"""
        import os, subprocess
        os.chdir(os.path.expanduser("~"))
        nb = os.path.expanduser("~/{COURSE}/hello/hello.ipynb")
        if not os.path.exists(nb):
            subprocess.run(["nbgrader", "fetch_assignment", "hello", "--course", "{COURSE}"],
                           check=True, capture_output=True)
        with open(nb, "w") as fh:
            fh.write({nbformat.writes(hostile)!r})
        r = subprocess.run(["nbgrader", "submit", "hello", "--course", "{COURSE}"],
                           capture_output=True, text=True)
        print(r.returncode, r.stdout[-500:], r.stderr[-500:])
        """
    )
    res = mallory.execute(code, timeout=120)
    mallory.close()
    assert res.error is None and res.stdout.startswith("0 "), res.stdout + str(res.error)
    inbound = layout.exchange(COURSE) / "inbound"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(inbound.glob("mallory+hello+*")):
        time.sleep(0.5)
    assert list(inbound.glob("mallory+hello+*")), "the exchange keeper did not receive it"

    cdir = layout.course_dir(COURSE)
    exchange = f"--Exchange.root={layout.root / 'exchange'}"
    run([BIN / "nbgrader", "collect", "hello", "--update", exchange], cdir)
    run(
        [BIN / "medai", "grade", "hello", "--course", cdir, "--data", layout.data]
        + ["--student", "mallory", "--force", "--quiet"],
        cdir,
    )
    # Rich outputs, as a grader that keeps them (nbgrader autograde) would leave them.
    auto = cdir / "autograded" / "mallory" / "hello" / "hello.ipynb"
    nb = nbformat.read(auto, 4)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "double_answer":
            cell.outputs = hostile_outputs(hub.url)
    nbformat.write(nb, auto)
    run([BIN / "nbgrader", "generate_feedback", "hello", "--student", "mallory", "--force"], cdir)

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{cdir / 'gradebook.db'}", course_id=COURSE) as gb:
        sub_id = gb.find_submission_notebook("hello", "hello", "mallory").id
    return sub_id


@pytest.fixture
def staff(browser, running_hub):
    """teacher logged in (hub home, no server of their own started), every request recorded;
    any request that would leave the machine is recorded and refused."""
    hub = running_hub
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.add_init_script(WATCH_CSP)
    record = {"requests": [], "outside": []}
    local = urlsplit(hub.url).hostname

    def guard(route):
        host = urlsplit(route.request.url).hostname or ""
        if host == local or host.endswith("." + local) or host == "127.0.0.1":
            route.continue_()
        else:
            record["outside"].append(route.request.url)
            route.abort()

    ctx.route("**/*", guard)
    ctx.on("request", lambda r: record["requests"].append(r.url))
    page = ctx.new_page()
    page.goto(hub.url + "/hub/login?next=" + quote("/hub/home"))
    log_in(page, "teacher", hub.passwords["teacher"])
    page.wait_for_url("**/hub/home")
    yield page, record
    ctx.close()


def executable_markup(html: str) -> list[str]:
    """Elements of ``html`` that could run script: handlers, scripts other than the page's
    MathJax, javascript: URLs, frames, objects."""
    from bs4 import BeautifulSoup

    bad = []
    for el in BeautifulSoup(html, "html.parser").find_all(True):
        attrs = " ".join(f"{k}={v}" for k, v in el.attrs.items())
        if any(k.lower().startswith("on") for k in el.attrs):
            bad.append(str(el)[:100])
        elif "javascript:" in attrs.lower().replace(" ", ""):
            bad.append(str(el)[:100])
        elif el.name in ("iframe", "object", "embed", "form"):
            bad.append(str(el)[:100])
        elif el.name == "script" and not (
            "MathJax" in (el.get("src") or "") or "window.MathJax" in el.text
        ):
            bad.append(str(el)[:100])
    return bad


def traces(page) -> dict:
    """What a payload would have left, in the page and in each of its frames."""
    found = {"pwned": [], "titles": [], "token_status": []}
    for frame in page.frames:
        try:
            got = frame.evaluate(
                "() => [window.__pwned || '', document.title, window.__token_status || 0]"
            )
        except Exception:  # a frame that went away or is cross-origin to the evaluator
            continue
        if got[0]:
            found["pwned"].append(got[0])
        if got[1] == "PWNED":
            found["titles"].append(frame.url)
        if got[2]:
            found["token_status"].append(got[2])
    return found


def click_script_links(page) -> int:
    """Click whatever ``javascript:`` link or form survived, as a curious grader would."""
    n = 0
    for sel in ("a[href^='javascript:' i]", "form[action^='javascript:' i] button"):
        for el in page.locator(sel).all():
            el.click(force=True, no_wait_after=True, timeout=2000)
            n += 1
    page.wait_for_timeout(300)
    return n


def open_view(page, url: str, wait_for: str, shot: Path):
    resp = page.goto(url)
    assert resp is not None and resp.status == 200, (url, resp and resp.status)
    page.wait_for_selector(wait_for, timeout=120_000)
    page.wait_for_timeout(1500)  # broken images fire onerror, frames load
    clicked = click_script_links(page)
    page.screenshot(path=shot, full_page=True)
    return resp, clicked


def assert_no_script_ran(page, record, view: str) -> None:
    t = traces(page)
    assert t == {"pwned": [], "titles": [], "token_status": []}, (view, t)
    hits = [u for u in record["requests"] if "/pwned/" in u]
    assert hits == [], (view, hits)


def assert_policy_forbids_inline_script(resp, view: str) -> str:
    csp = resp.headers.get("content-security-policy", "")
    script = [d for d in csp.split(";") if d.strip().startswith("script-src")]
    assert script, (view, csp)
    assert "'unsafe-inline'" not in script[0], (view, csp)
    return csp


def test_hostile_submission_runs_no_script_in_any_staff_view(
    staff, submission, running_hub, artifacts_dir
):
    page, record = staff
    hub = running_hub
    fg = hub.service_url(COURSE)
    before = pwned_tokens(hub.layout)

    # 1. the manual grading page: the submission rendered by nbconvert inside the formgrader
    resp, clicked = open_view(
        page,
        f"{fg}/formgrader/submissions/{submission}/",
        "#notebook-container .text_cell_render",
        artifacts_dir / "1-manual-grading.png",
    )
    assert_no_script_ran(page, record, "manual grading")
    csp = assert_policy_forbids_inline_script(resp, "manual grading")
    assert "'nonce-" in csp and "object-src 'none'" in csp and "base-uri 'none'" in csp
    # sanitised: nothing executable is left in the page, only the answer's text and maths
    left = page.evaluate(
        """() => ({
          handlers: [...document.querySelectorAll('*')].flatMap(e => [...e.attributes]
                      .filter(a => a.name.startsWith('on')).map(a => a.name + '=' + a.value)),
          unnonced: [...document.scripts].filter(s => !s.nonce).map(s => s.outerHTML.slice(0, 80)),
          active: [...document.querySelectorAll('#notebook-container iframe, '
                   + '#notebook-container object, #notebook-container embed, '
                   + '#notebook-container form, #notebook-container svg[onload]')].length,
        })"""
    )
    # nbgrader's own two handlers (allowed by their hashes) are the only ones left
    handlers = [h for h in left["handlers"] if not h.startswith("onclick=toggle_name(")]
    assert handlers == [] and left["active"] == 0 and clicked == 0, left
    # MathJax scripts are added by MathJax (no nonce needed under the policy); nothing else
    assert all("MathJax" in s or "math/" in s for s in left["unnonced"]), left["unnonced"]
    assert "My answer" in page.inner_text("#notebook-container")
    # the formgrader's own scripts still work under the policy: they fill in the scores
    # (polled from here: Playwright's wait_for_function needs eval, which the policy forbids)
    deadline = time.monotonic() + 30
    scores = []
    while time.monotonic() < deadline and not any(scores):
        scores = page.evaluate(
            "() => [...document.querySelectorAll('input.score')].map(i => i.value || i.placeholder)"
        )
        time.sleep(0.3)
    assert any(scores), scores

    # 2. the lists that lead to it (gradebook, submissions, a student's notebooks)
    for i, path in enumerate(
        [
            "formgrader/gradebook/hello/hello",
            "formgrader/manage_submissions/hello",
            "formgrader/manage_students/mallory/hello",
        ]
    ):
        resp, _ = open_view(page, f"{fg}/{path}", "#main-table tr", artifacts_dir / f"2-{i}.png")
        assert_no_script_ran(page, record, path)
        assert_policy_forbids_inline_script(resp, path)
        # nbgrader's scripts filled the table in (its placeholder row is gone, scores shown)
        rows = page.inner_text("#main-table")
        assert "Loading" not in rows and " / " in rows, rows

    # 3. the autograded notebook in the formgrader's JupyterLab (the "live notebook")
    resp, _ = open_view(
        page,
        f"{fg}/lab/tree/autograded/mallory/hello/hello.ipynb",
        ".jp-Notebook .jp-MarkdownCell .jp-RenderedMarkdown",
        artifacts_dir / "3-jupyterlab.png",
    )
    page.wait_for_selector(".jp-OutputArea-output", timeout=60_000)
    page.wait_for_timeout(1500)
    assert_no_script_ran(page, record, "jupyterlab")
    assert_policy_forbids_inline_script(resp, "jupyterlab")

    # 4. the same notebook through the server's nbconvert view
    resp, _ = open_view(
        page,
        f"{fg}/nbconvert/html/autograded/mallory/hello/hello.ipynb?download=false",
        "body",
        artifacts_dir / "4-nbconvert.png",
    )
    assert_no_script_ran(page, record, "nbconvert")
    assert "sandbox" in assert_policy_forbids_inline_script(resp, "nbconvert")

    # 5. the generated feedback, opened in the formgrader's file view
    resp, _ = open_view(
        page,
        f"{fg}/files/feedback/mallory/hello/hello.html",
        "body",
        artifacts_dir / "5-feedback.png",
    )
    assert_no_script_ran(page, record, "feedback")
    assert "sandbox" in assert_policy_forbids_inline_script(resp, "feedback")
    feedback = (
        hub.layout.course_dir(COURSE) / "feedback" / "mallory" / "hello" / "hello.html"
    ).read_text()
    assert executable_markup(feedback) == [], "the feedback file itself holds live markup"

    # the instructor's hub account has no token created by the page, and nothing left the box
    assert pwned_tokens(hub.layout) == before == 0
    assert record["outside"] == []
    (artifacts_dir / "csp-violations.json").write_text(
        json.dumps(page.evaluate("() => window.__csp || []"), indent=1)
    )


def test_formgrader_works_offline_and_renders_maths(staff, submission, running_hub, artifacts_dir):
    page, record = staff
    fg = running_hub.service_url(COURSE)
    page.goto(f"{fg}/formgrader/submissions/{submission}/")
    # MathJax, from the formgrader's own server, typesets the answer's $e^{i\\pi} + 1 = 0$
    page.wait_for_selector("#notebook-container .MathJax", timeout=60_000)
    page.screenshot(path=artifacts_dir / "maths.png")
    mathjax = [u for u in record["requests"] if "MathJax.js" in u]
    assert mathjax and all(u.startswith(fg + "/static/jupyter_server_mathjax/") for u in mathjax)
    for path in ("formgrader/manage_assignments", "formgrader/gradebook"):
        page.goto(f"{fg}/{path}")
        page.wait_for_selector("#main-table tr td", timeout=60_000)
    assert record["outside"] == [], record["outside"]


def test_a_link_that_injects_into_a_formgrader_script_runs_nothing(
    staff, running_hub, artifacts_dir
):
    """nbgrader writes the assignment id from the URL into an inline script; a trainee could
    send the instructor a link that closes the string there. The formgrader escapes it."""
    page, record = staff
    fg = running_hub.service_url(COURSE)
    evil = quote('";' + js("reflected", running_hub.url) + "//", safe="")
    page.goto(f"{fg}/formgrader/manage_submissions/{evil}")
    page.wait_for_timeout(2000)
    page.screenshot(path=artifacts_dir / "reflected.png")
    assert_no_script_ran(page, record, "reflected link")
