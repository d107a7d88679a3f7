"""Origins and staff-page hardening, as plain code (no hub): names, checks, sanitiser, policy."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading

import pytest
import yaml
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from medai.hub import staffpages
from medai.hub.launcher import LaunchError, choose_origins, free_port
from medai.hub.origins import Origins, OriginsError, check_public_host
from medai.testing.hub import LoopbackTransport, origins_of


def test_hub_servers_and_services_get_their_own_hosts():
    o = Origins("localhost", 8000)
    assert o.hub == "http://localhost:8000"
    assert o.server_url("alice") == "http://alice.localhost:8000/user/alice"
    assert o.service_url("medai101") == "http://medai101--service.localhost:8000/services/medai101"
    # names that are not DNS labels get JupyterHub's own encoding, never the hub's host
    from jupyterhub.utils import subdomain_hook_idna

    odd = o.user_host("Zoë Smith")
    assert odd == subdomain_hook_idna("Zoë Smith", "localhost", "user")
    assert odd.endswith(".localhost") and " " not in odd and odd.isascii()
    assert Origins("medai.lan", 80).user("t1") == "http://t1.medai.lan"
    assert origins_of("http://localhost:8123") == Origins("localhost", 8123)


@pytest.mark.parametrize(
    "bad, why",
    [
        ("192.168.1.10", "an IP address has no subdomains"),
        ("::1", "an IP address has no subdomains"),
        ("http://medai.lan", "only the host name"),
        ("medai.lan:8000", "only the host name"),
        ("medai_lan", "not a DNS name"),
        ("-medai.lan", "not a DNS name"),
    ],
)
def test_public_host_must_be_a_dns_name(bad, why):
    with pytest.raises(OriginsError, match=why):
        check_public_host(bad)


def test_public_host_is_normalised():
    assert check_public_host(" Medai.LAN. ") == "medai.lan"


def test_serving_other_machines_needs_a_public_name():
    with pytest.raises(LaunchError, match="--public-host NAME"):
        choose_origins("0.0.0.0", 8000, "localhost")
    assert choose_origins("0.0.0.0", 8000, "medai.lan").hub == "http://medai.lan:8000"
    assert choose_origins("127.0.0.1", 8000, "localhost").hub == "http://localhost:8000"


def test_medai_up_refuses_a_lan_address_without_a_name(tmp_path):
    course = tmp_path / "course.yaml"
    course.write_text(
        yaml.safe_dump(
            {"course": {"id": "c", "title": "C"}, "people": {"instructors": ["t"]}},
        )
    )
    res = subprocess.run(
        [sys.executable, "-m", "medai.cli", "up", "--config", str(course), "--ip", "0.0.0.0"]
        + ["--port", str(free_port()), "--state", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "--public-host NAME" in res.stderr and "README" in res.stderr
    assert not (tmp_path / "state").exists()


def test_loopback_transport_keeps_host_and_cookies_per_host():
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append((self.headers["Host"], self.headers.get("Cookie")))
            self.send_response(200)
            if self.path == "/set":
                self.send_header("Set-Cookie", "s=1; Path=/")
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    o = Origins("localhost", server.server_port)
    import httpx

    try:
        with httpx.Client(transport=LoopbackTransport(o)) as c:
            c.get(o.user("alice") + "/set")
            c.get(o.user("alice") + "/again")
            c.get(o.hub + "/hub")
    finally:
        server.shutdown()
    port = server.server_port
    assert seen == [
        (f"alice.localhost:{port}", None),
        (f"alice.localhost:{port}", "s=1"),  # alice's host got its own cookie back
        (f"localhost:{port}", None),  # the hub's host did not
    ]


# --------------------------------------------------------------------------- staff pages

HOSTILE = (
    "<h2>Answer</h2><p>see <img src='data:image/png;base64,iVBO' alt='plot'></p>"
    "<table class='dataframe'><thead><tr><th>a</th></tr></thead><tr><td>1</td></tr></table>"
    "<script>alert(1)</script><img src=x onerror=alert(2)><svg onload=alert(3)></svg>"
    "<a href='javascript:alert(4)'>x</a><a href='https://example.org'>ok</a>"
    "<iframe srcdoc='<script>alert(5)</script>'></iframe><form action='javascript:alert(6)'>"
    "<details ontoggle=alert(7) open>d</details><img src='data:text/html,<script>'>"
    "<p style='background:url(javascript:alert(8))'>s</p>"
)


def test_clean_html_keeps_the_answer_and_drops_every_script():
    out = staffpages.clean_html(HOSTILE)
    for kept in ("<h2>Answer</h2>", 'alt="plot"', "data:image/png", 'class="dataframe"', "<th>"):
        assert kept in out, kept
    assert 'href="https://example.org"' in out
    for gone in ("<script", "onerror", "onload", "ontoggle", "javascript:", "<iframe", "<svg"):
        assert gone not in out.lower(), gone
    assert "data:text/html" not in out and "style=" not in out
    assert "alert(1)" not in out  # script content removed, not shown as text


def test_only_trusted_templates_get_the_nonce(tmp_path):
    from jinja2 import ChoiceLoader, Environment, FileSystemLoader

    trusted, other = tmp_path / "trusted", tmp_path / "other"
    trusted.mkdir()
    other.mkdir()
    (trusted / "page.j2").write_text(
        '<script>var x = "{{ v }}";</script><span onclick="go()">{{ body }}</span>'
    )
    (other / "part.j2").write_text("<script>untrusted()</script>")
    (other / "page.j2").write_text("shadowed: never used")
    paths = [str(trusted), str(other)]
    loader = ChoiceLoader(
        [staffpages.MarkTrustedScripts(paths, [str(trusted)]), FileSystemLoader(paths)]
    )
    env = Environment(loader=loader, autoescape=True)
    html = env.get_template("page.j2").render(v='";alert(1)//', body="<script>x()</script>")
    nonce = f'<script nonce="{staffpages.PLACEHOLDER}">'
    assert html.count(nonce) == 1  # the template's own script
    assert "&lt;script&gt;x()" in html  # rendered values never get it (and are escaped)
    assert "&#34;;alert(1)//" in html  # cannot close the template's string
    assert env.get_template("part.j2").render() == "<script>untrusted()</script>"
    assert staffpages._sha256_source("go()") in staffpages.TRUSTED_HANDLER_HASHES


def test_formgrader_pages_get_a_fresh_nonce_and_no_cache():
    def respond(path: str, body: bytes):
        req = HTTPServerRequest(
            start_line=RequestStartLine("GET", path, "HTTP/1.1"),
            headers=HTTPHeaders({"Host": "c--service.localhost:8000"}),
        )
        t = staffpages.StaffPageCSP(req, base_url="/services/c/")
        headers = HTTPHeaders({"Content-Length": str(len(body)), "Etag": '"x"'})
        _, headers, out = t.transform_first_chunk(200, headers, body, True)
        return headers, out

    page = f'<script nonce="{staffpages.PLACEHOLDER}">ok()</script>'.encode()
    h1, b1 = respond("/services/c/formgrader/gradebook", page)
    h2, b2 = respond("/services/c/formgrader/gradebook", page)
    n1 = b1.split(b'nonce="')[1].split(b'"')[0].decode()
    assert staffpages.PLACEHOLDER.encode() not in b1 and b1 != b2  # fresh per response
    csp = h1["Content-Security-Policy"]
    assert f"'nonce-{n1}'" in csp and "'unsafe-inline'" not in csp.split("style-src")[0]
    assert "http://c--service.localhost:8000/services/c/static/jupyter_server_mathjax/" in csp
    assert h1["Content-Length"] == str(len(b1)) and "Etag" not in h1
    assert h1["Cache-Control"] == "no-store"
    # other pages of the server keep the server's policy; the placeholder never leaves
    h3, b3 = respond("/services/c/lab", page)
    assert "Content-Security-Policy" not in h3 and staffpages.PLACEHOLDER.encode() not in b3
