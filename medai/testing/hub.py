"""A hub user driven over HTTP the way a browser does it, for tests and benchmarks.

Logs in through the proxy with the login form, waits for the user's server, and runs code in a
kernel of that server over the Jupyter kernel WebSocket protocol, so tests can check what a
trainee's code can and cannot do from inside their sandbox. Needs ``httpx`` (the ``test`` extra).
"""

from __future__ import annotations

import asyncio
import copy
import http.cookiejar
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from medai.hub.origins import Origins


class LoopbackTransport(httpx.BaseTransport):
    """An httpx transport that sends requests for the hub's hosts to the proxy's address.

    The request keeps its URL for the client (cookies are stored and sent per host, as a
    browser does) and its Host header for the proxy (which routes by host); only the TCP
    connection goes to ``connect`` instead of a DNS lookup of ``alice.localhost``.
    """

    def __init__(self, origins: Origins, connect: str = "127.0.0.1", **kwargs):
        self.origins = origins
        self.connect = connect
        self._inner = httpx.HTTPTransport(**kwargs)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.origins.covers(request.url.host):
            request = httpx.Request(
                request.method,
                request.url.copy_with(host=self.connect),
                headers=request.headers,  # Host: alice.localhost:PORT, set from the URL
                stream=request.stream,
                extensions=request.extensions,
            )
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def _mirror_parent_domain_cookies(jar: http.cookiejar.CookieJar, host: str) -> None:
    """Python's cookie jar calls the host ``localhost`` "localhost.local", so a cookie the hub
    sets for ``Domain=localhost`` (its session id, shared with the subdomains) would never be
    sent back to ``localhost`` itself; browsers do send it. Keep a host-only twin for it."""
    if "." in host:
        return
    for c in list(jar):
        if c.domain == "." + host:
            twin = copy.copy(c)
            twin.domain, twin.domain_specified, twin.domain_initial_dot = (
                f"{host}.local",
                False,
                False,
            )
            jar.set_cookie(twin)


def loopback_client(origins: Origins, connect: str = "127.0.0.1", **kwargs) -> httpx.Client:
    """An httpx client that reaches the hub's hosts on ``connect`` (see LoopbackTransport);
    ``verify`` applies to the connections it makes."""
    transport_kw = {"verify": kwargs.pop("verify")} if "verify" in kwargs else {}
    return httpx.Client(transport=LoopbackTransport(origins, connect, **transport_kw), **kwargs)


def origins_of(hub_url: str) -> Origins:
    """The :class:`Origins` of a hub from its public URL (``http://localhost:8000``)."""
    u = urlsplit(hub_url)
    port = u.port or {"http": 80, "https": 443}[u.scheme]
    return Origins(u.hostname or "localhost", port, u.scheme)


@dataclass
class ExecResult:
    stdout: str
    stderr: str
    error: str | None  # "ename: evalue" of an uncaught exception


class HubUser:
    """``base_url`` is the hub's public URL; relative paths in ``client`` go to the hub, and
    :meth:`api` to the user's own server on its own origin (see :mod:`medai.hub.origins`)."""

    def __init__(self, base_url: str, name: str, password: str):
        self.base = base_url.rstrip("/")
        self.name = name
        self.origins = origins_of(self.base)
        self.client = httpx.Client(
            base_url=self.base,
            transport=LoopbackTransport(self.origins),
            follow_redirects=True,
            timeout=60,
        )
        host = self.origins.host
        self.client.event_hooks["response"].append(
            lambda response: _mirror_parent_domain_cookies(self.client.cookies.jar, host)
        )
        self.client.get("/hub/login")
        xsrf = self._cookie("_xsrf", "/hub/")
        r = self.client.post(
            "/hub/login",
            data={"username": name, "password": password, "_xsrf": xsrf},
            follow_redirects=False,
        )
        if r.status_code != 302:
            raise AssertionError(f"login of {name} failed: HTTP {r.status_code}")

    def _cookie(self, name: str, path_prefix: str) -> str:
        for c in self.client.cookies.jar:
            if c.name == name and (c.path or "/").startswith(path_prefix.rstrip("/")):
                return c.value
        for c in self.client.cookies.jar:
            if c.name == name:
                return c.value
        raise KeyError(name)

    def start_server(self, timeout: float = 120) -> None:
        """Ask the hub for this user's server and wait until it answers."""
        self.client.get("/hub/spawn", follow_redirects=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.client.get(f"/hub/api/users/{self.name}")
            if r.status_code == 200:
                server = r.json().get("servers", {}).get("")
                if server and server.get("ready"):
                    break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"{self.name}'s server did not start in {timeout} s")
        # Visit the server once: the OAuth round trip gives us its cookie (and its _xsrf).
        self.client.get(f"{self.server_url}/lab").raise_for_status()
        self.client.get(f"{self.server_url}/api/status").raise_for_status()

    @property
    def server(self) -> str:
        """The server's path prefix (its cookies are scoped to it, on its own host)."""
        return f"/user/{self.name}"

    @property
    def server_url(self) -> str:
        """The server's public URL: ``http://<name>.localhost:PORT/user/<name>``."""
        return self.origins.server_url(self.name)

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        headers = kw.pop("headers", {})
        try:
            headers["X-XSRFToken"] = self._cookie("_xsrf", self.server)
        except KeyError:
            pass
        return self.client.request(method, self.server_url + path, headers=headers, **kw)

    def hub_api(self, method: str, path: str, **kw) -> httpx.Response:
        """A call to the hub's REST API with this user's login cookie (and its XSRF token)."""
        headers = kw.pop("headers", {})
        headers["X-XSRFToken"] = self._cookie("_xsrf", "/hub/")
        return self.client.request(method, "/hub/api" + path, headers=headers, **kw)

    def stop_server(self, timeout: float = 60) -> None:
        r = self.hub_api("DELETE", f"/users/{self.name}/server")
        if r.status_code not in (202, 204):
            raise AssertionError(f"stopping {self.name}'s server: HTTP {r.status_code} {r.text}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.client.get(f"/hub/api/users/{self.name}").json()["servers"].get("")
            if not server:
                return
            time.sleep(0.3)
        raise TimeoutError(f"{self.name}'s server did not stop in {timeout} s")

    def restart_server(self, timeout: float = 120) -> None:
        self.stop_server()
        self.start_server(timeout)

    def execute(self, code: str, timeout: float = 60) -> ExecResult:
        """Run ``code`` in a fresh kernel of this user's server; shut the kernel down after."""
        r = self.api("POST", "/api/kernels", json={"name": "python3"})
        r.raise_for_status()
        kid = r.json()["id"]
        try:
            return self.execute_in(kid, code, timeout)
        finally:
            self.api("DELETE", f"/api/kernels/{kid}")

    def execute_in(self, kid: str, code: str, timeout: float = 60) -> ExecResult:
        """Run ``code`` in this user's running kernel ``kid``."""
        # Own thread, own event loop: callers may already run one (Playwright's sync API).
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self._run(kid, code, timeout)).result()

    async def _run(self, kid: str, code: str, timeout: float) -> ExecResult:
        http_url = f"{self.server_url}/api/kernels/{kid}/channels"
        # The cookies a browser would send to the server's host, and the TCP connection to
        # the proxy's address with that host in the Host header (as LoopbackTransport does).
        cookie = self.client.build_request("GET", http_url).headers.get("cookie", "")
        u = urlsplit(http_url)
        ws_scheme = "wss" if u.scheme == "https" else "ws"
        ws_url = f"{ws_scheme}://127.0.0.1:{u.port or 80}{u.path}"
        origin = self.origins.user(self.name)
        req = HTTPRequest(ws_url, headers={"Cookie": cookie, "Origin": origin, "Host": u.netloc})
        conn = await websocket_connect(req)
        msg_id = uuid.uuid4().hex
        conn.write_message(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": self.name,
                        "session": uuid.uuid4().hex,
                        "msg_type": "execute_request",
                        "version": "5.3",
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": {"code": code, "silent": False, "stop_on_error": True},
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        out, err, error = [], [], None
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"code did not finish in {timeout} s")
                raw = await asyncio.wait_for(conn.read_message(), left)
                if raw is None:
                    raise ConnectionError("kernel WebSocket closed")
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["header"]["msg_type"]
                content = msg["content"]
                if kind == "stream":
                    (out if content["name"] == "stdout" else err).append(content["text"])
                elif kind == "error":
                    error = f"{content['ename']}: {content['evalue']}"
                elif kind == "status" and content["execution_state"] == "idle":
                    break
        finally:
            conn.close()
        return ExecResult("".join(out), "".join(err), error)

    def close(self) -> None:
        self.client.close()


def tokens_with_note(hub_dir: Path, note: str) -> int:
    """How many API tokens with ``note`` the hub's own database holds (``hub_dir``: the hub's
    state folder, ``layout.hub``), read-only: how a test sees that a payload minted none."""
    import sqlite3

    db = sqlite3.connect(f"file:{hub_dir / 'jupyterhub.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute("select count(*) from api_tokens where note = ?", (note,)).fetchone()[0]
    finally:
        db.close()
