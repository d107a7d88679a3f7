"""`medai up --ssl-cert --ssl-key`: HTTPS on the public endpoint, Secure cookies, clear errors.

The certificate is self-signed, made here with ``cryptography`` (a JupyterHub dependency).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from medai.config import parse_config
from medai.hub.launcher import LaunchError, check_tls_files, free_port, start_hub
from medai.testing.browser import log_in
from medai.testing.hub import loopback_client, origins_of

MEDAI = [sys.executable, "-m", "medai.cli"]


def write_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return key


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    key = write_key(folder / "key.pem")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return folder / "cert.pem", folder / "key.pem"


def course(tmp_path: Path):
    data = {
        "course": {"id": "tls", "title": "TLS"},
        "people": {"instructors": ["teacher"], "trainees": ["alice", "bob"]},
    }
    path = tmp_path / "course.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, parse_config(data)


# --- bad files: refused before anything starts, saying which file and why ----------------------


def test_tls_files_are_checked(tmp_path):
    cert, key = make_cert(tmp_path)
    assert check_tls_files(None, None) is None
    tls = check_tls_files(cert, key)
    assert (tls.cert, tls.key) == (str(cert), str(key))
    with pytest.raises(LaunchError, match="--ssl-cert needs --ssl-key too"):
        check_tls_files(cert, None)
    with pytest.raises(LaunchError, match="--ssl-key needs --ssl-cert too"):
        check_tls_files(None, key)
    with pytest.raises(LaunchError, match=f"--ssl-cert {tmp_path / 'nope.pem'}: no such file"):
        check_tls_files(tmp_path / "nope.pem", key)
    with pytest.raises(LaunchError, match=f"--ssl-key {tmp_path}: is a folder"):
        check_tls_files(cert, tmp_path)
    write_key(tmp_path / "other-key.pem")
    with pytest.raises(LaunchError, match="the key does not belong to the certificate"):
        check_tls_files(cert, tmp_path / "other-key.pem")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(LaunchError, match="not a PEM certificate and private key"):
        check_tls_files(tmp_path / "junk.pem", key)


@pytest.mark.slow
def test_medai_up_refuses_an_unreadable_key_before_anything_starts(tmp_path):
    """Run as an unprivileged user (root would read the file anyway)."""
    cert, key = make_cert(tmp_path)
    key.chmod(0)
    path, _ = course(tmp_path)
    res = subprocess.run(
        ["bwrap", "--unshare-user", "--uid", "1000", "--cap-drop", "ALL", "--dev-bind", "/", "/"]
        + [*MEDAI, "up", "--config", str(path), "--port", str(free_port())]
        + ["--state", str(tmp_path / "state"), "--ssl-cert", str(cert), "--ssl-key", str(key)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert f"--ssl-key {key}: not readable by this user" in res.stderr
    assert not (tmp_path / "state").exists()


# --- a hub on HTTPS --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = make_cert(tmp)
    path, cfg = course(tmp)
    hub, passwords, _ = start_hub(
        cfg,
        config_path=path,
        state=tmp / "state",
        port=free_port(),
        demo=True,
        echo=print,
        ssl_cert=cert,
        ssl_key=key,
    )
    hub.passwords = passwords
    try:
        yield hub
    finally:
        hub.stop()


def set_cookies(responses) -> list[str]:
    return [v for r in responses for k, v in r.headers.multi_items() if k.lower() == "set-cookie"]


@pytest.mark.slow
def test_login_over_https_and_every_cookie_is_secure(tls_hub):
    assert tls_hub.url.startswith("https://localhost:")
    origins = origins_of(tls_hub.url)
    plain = origins_of(tls_hub.url.replace("https:", "http:"))
    with pytest.raises(httpx.TransportError):  # no plain HTTP on that port
        loopback_client(plain, timeout=10).get(
            tls_hub.url.replace("https:", "http:") + "/hub/login"
        )
    with loopback_client(origins, base_url=tls_hub.url, verify=False, timeout=60) as c:
        seen = [c.get("/hub/login")]
        r = c.post(
            "/hub/login",
            data={
                "username": "alice",
                "password": tls_hub.passwords["alice"],
                "_xsrf": c.cookies.get("_xsrf"),
            },
            follow_redirects=False,
        )
        assert r.status_code == 302
        seen.append(r)
        # alice's own server: its OAuth round trip sets its cookies too
        c.get("/hub/spawn", follow_redirects=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            server = c.get("/hub/api/users/alice").json().get("servers", {}).get("")
            if server and server.get("ready"):
                break
            time.sleep(0.5)
        lab = c.get(tls_hub.server_url("alice") + "/lab", follow_redirects=True)
        assert lab.status_code == 200 and str(lab.url).startswith(tls_hub.server_url("alice"))
        seen += [*lab.history, lab]
    with loopback_client(origins, base_url=tls_hub.url, verify=False, timeout=60) as c:
        c.get("/hub/login")
        c.post(
            "/hub/login",
            data={
                "username": "teacher",
                "password": tls_hub.passwords["teacher"],
                "_xsrf": c.cookies.get("_xsrf"),
            },
        )
        fg = c.get(tls_hub.service_url("tls") + "/formgrader", follow_redirects=True)
        assert fg.status_code == 200 and "/services/tls/" in str(fg.url)
        seen += [*fg.history, fg]
    cookies = set_cookies(seen)
    names = {v.split("=", 1)[0] for v in cookies}
    assert {"_xsrf", "jupyterhub-hub-login", "jupyterhub-session-id"} <= names
    assert {"jupyterhub-user-alice", "service-tls"} <= names, names
    assert any("Path=/user/alice/" in v for v in cookies if v.startswith("_xsrf="))
    assert any("Path=/services/tls/" in v for v in cookies if v.startswith("_xsrf="))
    # every cookie that carries a value is Secure (deleting one, with an empty value and a
    # past date, is JupyterHub's own clear_cookie)
    live = [v for v in cookies if not v.split(";")[0].endswith(("=", '=""'))]
    insecure = [v for v in live if "secure" not in v.lower().replace(" ", "").split(";")]
    assert insecure == [], insecure


@pytest.mark.slow
@pytest.mark.browser
def test_a_browser_logs_in_over_https(tls_hub, browser, artifacts_dir):
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    try:
        page.goto(tls_hub.url + "/hub/login")
        assert page.is_hidden("#insecure-login-warning")  # shown only over http
        log_in(page, "bob", tls_hub.passwords["bob"])
        page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
        page.screenshot(path=artifacts_dir / "jupyterlab-over-https.png")
        assert page.url.startswith(tls_hub.server_url("bob") + "/lab")
        assert all(c["secure"] for c in ctx.cookies())
    finally:
        ctx.close()
