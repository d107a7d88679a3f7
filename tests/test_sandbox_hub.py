"""The data sandbox in the real embedded hub: a trainee uses the notebook client from her
kernel, tries to reach the private data by every path, and the data owner reviews in a real
browser. (``tests/data/hub-course.yaml`` declares the sandboxed ``cohort``, owned by teacher.)"""

from __future__ import annotations

import json
import textwrap
import time
from urllib.parse import quote

import httpx
import pytest

from medai.sandbox import cohort
from medai.sandbox.registry import SandboxLayout
from medai.testing.hub import HubUser, LoopbackTransport  # the one import of the hub client

pytestmark = pytest.mark.slow
SERVICE = "medai-sandbox"
XSS = "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned=2'>"


def kernel_json(user: HubUser, code: str, timeout: float = 180) -> dict:
    r = user.execute(
        textwrap.dedent(code) + "\nimport json; print('@@' + json.dumps(out))", timeout
    )
    text = r.stdout if hasattr(r, "stdout") else str(r)
    line = [x for x in text.splitlines() if x.startswith("@@")]
    assert line, r
    return json.loads(line[-1][2:])


@pytest.fixture(scope="module")
def owner_api(running_hub):
    """The data owner's token (with the review scope), calling the service through the proxy."""
    teacher = HubUser(running_hub.url, "teacher", running_hub.passwords["teacher"])
    r = teacher.hub_api(
        "POST",
        "/users/teacher/tokens",
        json={
            "scopes": [
                f"access:services!service={SERVICE}",
                f"custom:{SERVICE}:review",
                f"custom:{SERVICE}:usage",
            ],
            "expires_in": 3600,
        },
    )
    r.raise_for_status()
    token = r.json()["token"]
    client = httpx.Client(
        base_url=running_hub.service_url(SERVICE),
        transport=LoopbackTransport(teacher.origins),
        headers={"Authorization": f"token {token}"},
        timeout=60,
    )
    deadline = time.monotonic() + 120  # the service prepares the cohort when it starts
    while time.monotonic() < deadline:
        try:
            if client.get("/api/review").status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(1)
    yield client
    client.close()
    teacher.close()


def secrets_of(running_hub) -> list[str]:
    key = bytes.fromhex(running_hub.layout.data_secret.read_text().strip())
    out = []
    for c in cohort.canaries(key):
        out += [c.patient_id, c.marker]
    return out


def test_trainee_uses_the_client_and_gets_released_refused_and_held(running_hub, alice, owner_api):
    out = kernel_json(
        alice,
        """
        from medai.sandbox import client
        sb = client.connect()
        out = {"datasets": sb.datasets(), "mock": list(sb.mock("cohort").columns)}
        out["access"] = sb.request_access("cohort", "stroke risk by region, for the module 1 essay")
        """,
    )
    assert out["datasets"][0]["name"] == "cohort" and out["datasets"][0]["access"] == "none"
    assert out["mock"][1:] == cohort.COLUMNS and out["access"]["access"] == "pending"
    # bob cannot grant; the owner can
    assert owner_api.post("/api/access/alice/cohort", json={"decision": "grant"}).status_code == 200
    out = kernel_json(
        alice,
        f"""
        from medai.sandbox import client, outputs as out_
        sb = client.connect()
        def honest(df):
            return out.table(df, by=["region"], value="sbp", stat="mean")
        def rows(df):
            return df
        def forged(df):
            # {XSS}
            tr = df.sample(frac=0.7, random_state=0)
            return out.model(tr, y="stroke_5y", x=["age"], coef=[float(df.bmi.max())], intercept=0)
        res = [sb.submit(f, "cohort") for f in (honest, rows, forged)]
        out = [dict(status=r.status, rule=r.rule, output=r.output, raw=r.raw) for r in res]
        """,
    )
    assert [r["status"] for r in out] == ["released", "refused", "held"], out
    assert out[0]["output"]["kind"] == "table"
    text = json.dumps(out)
    for s in secrets_of(running_hub):
        assert s not in text
    # another trainee, with a token that may submit, cannot read alice's results
    bob = HubUser(running_hub.url, "bob", running_hub.passwords["bob"])
    r = bob.hub_api(
        "POST",
        "/users/bob/tokens",
        json={"scopes": [f"access:services!service={SERVICE}", f"custom:{SERVICE}:submit"]},
    )
    r.raise_for_status()
    with httpx.Client(
        base_url=running_hub.service_url(SERVICE),
        transport=LoopbackTransport(bob.origins),
        headers={"Authorization": f"token {r.json()['token']}"},
    ) as api:
        assert api.get("/api/datasets").status_code == 200
        for res in out:
            assert api.get(f"/api/jobs/{res['raw']['job']}").status_code == 404
        assert api.get("/api/review").status_code == 403
        # and a request without a token is refused, never redirected to a login page
        assert (
            httpx.Client(transport=LoopbackTransport(bob.origins))
            .get(running_hub.service_url(SERVICE) + "/api/datasets")
            .status_code
            == 403
        )
    bob.close()


def test_trainee_cannot_reach_private_data_or_owner_api(running_hub, alice, owner_api):
    lay = SandboxLayout(running_hub.layout.root)
    paths = [
        str(lay.private_file("cohort")),
        str(lay.audit_log),
        str(lay.store),
        str(lay.root),
        "/private/data.parquet",
        str(running_hub.layout.data_secret),
    ]
    out = kernel_json(
        alice,
        f"""
        import os, urllib.request
        out = {{"exists": [p for p in {paths!r} if os.path.exists(p)]}}
        found = []
        for root, dirs, files in os.walk("/data"):
            for f in files:
                try:
                    b = open(os.path.join(root, f), "rb").read(2_000_000)
                except OSError:
                    continue
                if any(m.encode() in b for m in {secrets_of(running_hub)!r}):
                    found.append(os.path.join(root, f))
        out["found"] = found
        from medai.sandbox import client
        sb = client.connect()
        codes = []
        for path in ("review", "audit", "access", "usage"):
            try:
                sb._call("GET", path)
                codes.append(200)
            except client.SandboxClientError as e:
                codes.append(str(e)[:3])
        out["codes"] = codes
        """,
    )
    assert out["exists"] == [] and out["found"] == [], out
    assert out["codes"] == ["403"] * 4, out
    # the owner's audit log holds every step and its chain verifies
    audit = owner_api.get("/api/audit").json()
    assert {"submit", "decision", "access-request"} <= {e["event"] for e in audit}
    from medai.sandbox.audit import verify

    ok, msg = verify(lay.audit_log)
    assert ok, msg


def test_owner_reviews_held_output_in_a_browser_and_markup_is_inert(
    running_hub, browser, owner_api
):
    held = owner_api.get("/api/review").json()
    assert any(XSS in j["code"] for j in held), held
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(running_hub.url + "/hub/login?next=" + quote("/hub/home"))
    page.fill("#username_input", "teacher")
    page.fill("#password_input", running_hub.passwords["teacher"])
    with page.expect_navigation(timeout=120_000):
        page.click("#login_submit")
    resp = page.goto(running_hub.service_url(SERVICE) + "/", timeout=120_000)
    assert resp.status == 200
    assert "script-src" not in resp.headers["content-security-policy"]  # no script at all
    assert XSS in page.inner_text("body")  # shown as text
    assert page.evaluate("window.__pwned") is None
    job = next(j for j in held if XSS in j["code"])
    page.locator(f"section:has-text('{job['id']}') button[value=refuse]").click()
    page.wait_for_load_state()
    assert owner_api.get("/api/review").json() == [j for j in held if j["id"] != job["id"]]
    ctx.close()
    # a trainee's browser session gets 403 from the page
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(running_hub.url + "/hub/login?next=" + quote("/hub/home"))
    page.fill("#username_input", "bob")
    page.fill("#password_input", running_hub.passwords["bob"])
    with page.expect_navigation(timeout=120_000):
        page.click("#login_submit")
    resp = page.goto(running_hub.service_url(SERVICE) + "/", timeout=120_000)
    assert resp.status == 403
    ctx.close()
