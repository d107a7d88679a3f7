"""A page a trainee serves cannot use a staff member's session, in Chromium, on the real hub.

The attacker is assumed to control every byte served on her server's origin (issue 9 found two
ways: a user-level ``extra_static_paths``, and whatever server she runs instead of Jupyter's).
The test gives her that directly, the way JupyterHub itself wires servers: a route in the real
proxy, under her server's prefix, to a page of her choosing. ``teacher`` is logged in to the
hub and has opened the formgrader; then he opens her link. Her script tries everything a page
can: read a hub page for its XSRF token and create an API token for him, read the hub API as
him, read the lab's solutions through the formgrader's contents API, read the hub in a frame,
and toss cookies onto the hub's host.

Why it holds: with ``subdomain_host`` her page is on ``mallory.localhost``, the hub on
``localhost`` and the formgrader on ``hubtest--service.localhost``: three origins, and three
sites (``localhost`` is a top-level name, so each subdomain is its own site). The browser lets
her script read none of their responses (no CORS), sends their Lax cookies on none of her
cross-site requests, refuses her ``Domain=localhost`` cookies, and JupyterHub refuses a POST
without the XSRF token she cannot read. Without it (all on one origin), the same script reads
``/hub/token``, posts the token request and reads the solutions: the attack of finding 1.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from medai.testing.browser import log_in
from medai.testing.hub import HubUser, tokens_with_note

pytestmark = [pytest.mark.slow, pytest.mark.browser]

COURSE = "hubtest"

ATTACK = """
<!doctype html><title>lab notes</title><body><h1>Interesting notes</h1>
<iframe id="hubframe" src="%(hub)s/hub/token"></iframe>
<script>
(async function () {
  const out = {};
  async function attempt(name, f) {
    try { out[name] = await f(); } catch (e) { out[name] = 'blocked: ' + e.name; }
  }
  await attempt('hub_token_page', async () => {
    const r = await fetch('%(hub)s/hub/token', {credentials: 'include'});
    const t = await r.text();
    const m = t.match(/xsrf_token:\\s*"([^"]+)"/);
    out.xsrf = m ? m[1] : '';
    return r.status + (out.xsrf ? ' with xsrf' : '');
  });
  await attempt('create_token', async () => {
    const r = await fetch('%(hub)s/hub/api/users/teacher/tokens', {
      method: 'POST', credentials: 'include',
      headers: {'X-XSRFToken': out.xsrf || '', 'Content-Type': 'application/json'},
      body: JSON.stringify({note: 'pwned', expires_in: 3600})});
    return r.status;
  });
  await attempt('create_token_no_cors', async () => {
    const r = await fetch('%(hub)s/hub/api/users/teacher/tokens', {
      method: 'POST', mode: 'no-cors', credentials: 'include',
      headers: {'Content-Type': 'text/plain'},
      body: JSON.stringify({note: 'pwned', expires_in: 3600})});
    return 'sent (' + r.type + ')';
  });
  await attempt('hub_api_user', async () => {
    const r = await fetch('%(hub)s/hub/api/user', {credentials: 'include'});
    return r.status + ' ' + (await r.text()).slice(0, 80);
  });
  await attempt('solutions', async () => {
    const r = await fetch('%(fg)s/api/contents/source/hello/hello.ipynb',
                          {credentials: 'include'});
    return r.status + ' ' + (await r.text()).slice(0, 80);
  });
  await new Promise(r => setTimeout(r, 1500));
  await attempt('frame', async () => {
    const d = document.getElementById('hubframe').contentDocument;
    return d && d.body ? 'read: ' + d.body.innerText.slice(0, 40) : 'no document';
  });
  for (const c of ['_xsrf=forged; Domain=%(domain)s; Path=/hub/',
                   'jupyterhub-session-id=forged; Domain=%(domain)s; Path=/']) {
    document.cookie = c;
  }
  window.__results = out;
})();
</script>
"""


class AttackPage(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def proxy_api(layout) -> tuple[str, dict]:
    """The proxy's REST API and token (the operator's, read from the proxy's environment)."""
    pid = int((layout.hub / "proxy.pid").read_text().strip())
    env = dict(
        kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv
    )
    settings = json.loads(layout.settings_file.read_text())
    api = settings["ConfigurableHTTPProxy"]["api_url"]
    return api, {"Authorization": f"token {env['CONFIGPROXY_AUTH_TOKEN']}"}


@pytest.fixture(scope="module")
def attacker_page(running_hub):
    """A page of mallory's choosing under her server's prefix: its URL."""
    hub = running_hub
    mallory = HubUser(hub.url, "mallory", hub.passwords["mallory"])
    mallory.start_server()
    mallory.close()
    AttackPage.body = (
        ATTACK
        % {
            "hub": hub.url,
            "fg": hub.service_url(COURSE),
            "domain": hub.hub.origins.host,
        }
    ).encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AttackPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api, auth = proxy_api(hub.layout)
    routes = httpx.get(f"{api}/api/routes", headers=auth).json()
    spec = next(k for k, v in routes.items() if v.get("user") == "mallory")
    path = spec.rstrip("/") + "/notes/"  # e.g. /mallory.localhost/user/mallory/notes/
    r = httpx.post(
        f"{api}/api/routes{path}",
        headers=auth,
        json={"target": f"http://127.0.0.1:{server.server_port}"},
    )
    assert r.status_code == 201, r.text
    yield hub.server_url("mallory") + "/notes/index.html"
    httpx.delete(f"{api}/api/routes{path}", headers=auth)
    server.shutdown()


def pwned_tokens(layout) -> int:
    """API tokens with the payload's note, in the hub's own database."""
    return tokens_with_note(layout.hub, "pwned")


def test_trainee_page_cannot_use_staff_session(browser, running_hub, attacker_page, artifacts_dir):
    hub = running_hub
    ctx = browser.new_context(viewport={"width": 1100, "height": 700})
    page = ctx.new_page()
    page.goto(hub.url + "/hub/login?next=%2Fhub%2Fhome")
    log_in(page, "teacher", hub.passwords["teacher"])
    page.wait_for_url("**/hub/home")
    # he has the formgrader open too: its session cookie is in the browser
    fg = hub.service_url(COURSE) + "/formgrader"
    assert page.goto(fg).status == 200
    staff_cookies = {(c["domain"], c["name"]) for c in ctx.cookies()}

    page.goto(attacker_page)
    assert page.url == attacker_page  # her page, on her origin, served through the proxy
    deadline = time.monotonic() + 30
    results = None
    while time.monotonic() < deadline and results is None:
        results = page.evaluate("() => window.__results || null")
        time.sleep(0.3)
    page.screenshot(path=artifacts_dir / "attacker-page.png")
    (artifacts_dir / "results.json").write_text(json.dumps(results, indent=1))
    assert results is not None, "the attacker's script did not finish"

    # nothing of the hub's or the formgrader's responses was readable to her script
    for key in ("hub_token_page", "hub_api_user", "solutions", "create_token"):
        assert str(results[key]).startswith("blocked"), (key, results)
    assert results["frame"] in ("no document",) or results["frame"].startswith("blocked"), results
    assert not results.get("xsrf")
    # and nothing was done in his name: no token, no cookie tossed onto the hub's host
    assert pwned_tokens(hub.layout) == 0
    after = ctx.cookies()
    assert not [c for c in after if c["value"] == "forged"], after
    assert {(c["domain"], c["name"]) for c in after} >= staff_cookies
    # his session still works (the attack did not log him out either)
    assert page.goto(fg).status == 200
    ctx.close()
