"""Trainee ↔ trainee channels and resources, attacked from inside alice's kernel.

Every server has its own network namespace (only its HTTP port in, the hub's API out), kernels
speak over IPC sockets in the server's private /tmp, and every server has its own cgroup with the
profile's limits (tests/data/hub-course.yaml: 1 core, 1 GB, 200 processes). Bob keeps a kernel
running that prints a marker and listens on an abstract Unix socket; alice tries to reach it the
ways a trainee who read the Jupyter messaging docs would, then tries to take the machine down.
"""

from __future__ import annotations

import json
import textwrap
import threading
import time
import uuid

import pytest

from medai.testing.hub import HubUser

pytestmark = pytest.mark.slow

MARKER = "MARKER-bob-kernel-" + uuid.uuid4().hex[:8]
ABSTRACT = "medai-bob-abstract-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def bob_kernel(running_hub):
    """bob's kernel, left running: prints MARKER every 0.2 s and serves an abstract socket."""
    bob = HubUser(running_hub.url, "bob", running_hub.passwords["bob"])
    bob.start_server()
    r = bob.api("POST", "/api/kernels", json={"name": "python3"})
    r.raise_for_status()
    kid = r.json()["id"]
    code = textwrap.dedent(
        f"""
        import socket, threading, time, sys
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind("\\0{ABSTRACT}")
        srv.listen(5)
        def serve():
            while True:
                c, _ = srv.accept()
                c.sendall(b"{MARKER}")
                c.close()
        threading.Thread(target=serve, daemon=True).start()
        def chatter():
            for _ in range(3000):
                print("{MARKER}", flush=True)
                time.sleep(0.2)
        threading.Thread(target=chatter, daemon=True).start()
        print("ready")
        """
    )
    res = bob.execute_in(kid, code, timeout=60)
    assert res.error is None and "ready" in res.stdout, res
    yield bob
    bob.api("DELETE", f"/api/kernels/{kid}")
    bob.close()


def host_listening_ports() -> set[int]:
    """Every TCP port listening on the host's loopback (the hub's network namespace)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_only_own_server_hub_api_and_data_sandbox_are_reachable(alice, bob_kernel, running_hub):
    """A full TCP scan of loopback from alice's kernel finds her own server, the hub API and the
    data-sandbox service (the two forwarded out, both refusing a request without a token)."""
    host_ports = sorted(host_listening_ports())
    sandbox_port = running_hub.hub.ports.sandbox
    assert sandbox_port, "the test course has a data sandbox: its service must be in the scan"
    code = textwrap.dedent(
        f"""
        import socket, json, os
        open_ports = []
        for port in range(1, 65536):
            s = socket.socket()
            s.settimeout(0.2)
            try:
                # (a scan of loopback now and then connects a socket to itself: not a listener)
                if s.connect_ex(("127.0.0.1", port)) == 0 and s.getsockname() != s.getpeername():
                    open_ports.append(port)
            finally:
                s.close()
        # and the host's listening ports, dialled on every local address alice can name
        reached = []
        for port in {host_ports!r}:
            for host in ("127.0.0.1", "::1", socket.gethostname()):
                try:
                    socket.create_connection((host, port), timeout=0.3).close()
                    reached.append([host, port])
                except OSError:
                    pass
        own_ns = []  # what listens in alice's own network namespace (her server, her kernels)
        for line in open("/proc/net/tcp").read().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A":
                own_ns.append(int(f[1].rsplit(":", 1)[1], 16))
        import urllib.request, urllib.error
        anonymous = []  # the forwarded services, asked without a token
        for url in ("http://127.0.0.1:{running_hub.hub.ports.hub}/hub/api/users",
                    "http://127.0.0.1:{sandbox_port}/services/medai-sandbox/api/usage"):
            try:
                urllib.request.urlopen(url, timeout=10).close()
                anonymous.append(200)
            except urllib.error.HTTPError as e:
                anonymous.append(e.code)
            except OSError as e:
                anonymous.append(type(e).__name__)
        print(json.dumps({{"open": open_ports, "reached": reached, "own_ns": own_ns,
                          "anonymous": anonymous,
                          "own": int(os.environ["JUPYTERHUB_SERVICE_URL"].rsplit(":", 1)[1].split("/")[0])}}))
        """
    )
    res = alice.execute(code, timeout=300)
    assert res.error is None, res.error
    report = json.loads(res.stdout.strip().splitlines()[-1])
    hub_port = running_hub.hub.ports.hub
    # what alice can dial is what listens in her own namespace (the hub API forward among it)
    assert set(report["open"]) == set(report["own_ns"]), report
    forwarded = {hub_port, report["own"], sandbox_port}
    assert forwarded <= set(report["open"]), report
    assert report["anonymous"] == [403, 403], report
    # bob's server, the proxy, the formgrader, the grading service: all listen on the host,
    # none is reachable
    others = {p for p in host_ports if p not in forwarded}
    assert others, "the scan must have had other servers to find"
    assert sorted(others & set(report["open"])) == []
    assert [p for _, p in report["reached"] if p in others] == []


def test_cannot_read_another_trainees_kernel(alice, bob_kernel):
    """No connection file, no IPC socket, no TCP port of bob's kernel is within alice's reach;
    a ZMQ subscriber on every candidate endpoint hears none of bob's output."""
    code = textwrap.dedent(
        """
        import glob, json, os, socket, time, zmq
        found = {"files": [], "messages": []}
        for pattern in ("/tmp/**/kernel-*.json", "/home/*/.local/share/jupyter/runtime/*.json",
                        "/tmp/jupyter-kernel-*"):
            found["files"] += glob.glob(pattern, recursive=True)
        endpoints = ["ipc://" + p for p in glob.glob("/tmp/jupyter-kernel-*")]
        for port in range(1, 65536):
            s = socket.socket(); s.settimeout(0.05)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                endpoints.append(f"tcp://127.0.0.1:{port}")
            s.close()
        ctx = zmq.Context()
        for ep in endpoints:
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.setsockopt(zmq.LINGER, 0)
            sub.connect(ep)
            deadline = time.time() + 0.6
            while time.time() < deadline:
                if sub.poll(100):
                    found["messages"].append(repr(sub.recv_multipart()))
            sub.close()
        print(json.dumps(found))
        """
    )
    res = alice.execute(code, timeout=300)
    assert res.error is None, res.error
    found = json.loads(res.stdout.strip().splitlines()[-1])
    assert not any(MARKER in m for m in found["messages"])
    # alice's own kernel (this one) may be among the files; bob's never is
    assert all("bob" not in f for f in found["files"])


def test_cannot_reach_another_trainees_abstract_socket(alice, bob_kernel):
    code = textwrap.dedent(
        f"""
        import json, socket
        listed = [l for l in open("/proc/net/unix").read().splitlines() if "{ABSTRACT}" in l]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect("\\0{ABSTRACT}")
            got = s.recv(100).decode()
        except OSError as exc:
            got = "refused: " + type(exc).__name__
        print(json.dumps({{"listed": listed, "got": got}}))
        """
    )
    res = alice.execute(code)
    assert res.error is None, res.error
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["listed"] == []
    assert MARKER not in report["got"] and report["got"].startswith("refused")


def _bob_answers(bob: HubUser, results: list, stop: threading.Event) -> None:
    while not stop.is_set():
        t0 = time.monotonic()
        res = bob.execute("print(6 * 7)", timeout=120)
        results.append((res.stdout.strip(), time.monotonic() - t0))


def test_memory_hog_is_stopped_and_others_keep_working(alice, bob_kernel):
    results: list = []
    stop = threading.Event()
    t = threading.Thread(target=_bob_answers, args=(bob_kernel, results, stop), daemon=True)
    t.start()
    code = textwrap.dedent(
        """
        import subprocess, sys, json
        hog = "b = bytearray(3 * 1024**3)\\nfor i in range(0, len(b), 4096): b[i] = 1\\nprint('survived')"
        p = subprocess.run([sys.executable, "-c", hog], capture_output=True, text=True)
        print(json.dumps({"rc": p.returncode, "out": p.stdout}))
        """
    )
    try:
        res = alice.execute(code, timeout=180)
    finally:
        stop.set()
        t.join(timeout=180)
    assert res.error is None, res.error
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["out"] == "" and report["rc"] == -9  # the kernel's OOM killer, in alice's cgroup
    assert results and all(out == "42" for out, _ in results)
    # alice's own server and kernel are still there after her hog was stopped
    assert alice.execute("print('alive')").stdout.strip() == "alive"


def test_fork_bomb_meets_the_process_limit_and_others_keep_working(alice, bob_kernel):
    results: list = []
    stop = threading.Event()
    t = threading.Thread(target=_bob_answers, args=(bob_kernel, results, stop), daemon=True)
    t.start()
    bomb = textwrap.dedent(
        """
        import os, sys, time
        os.setsid()
        children, error = 0, None
        end = time.time() + 8
        while time.time() < end:
            try:
                pid = os.fork()
            except OSError as exc:
                error = type(exc).__name__
                break
            if pid == 0:
                while time.time() < end:
                    sum(range(10000))  # busy: the CPU quota holds too
                os._exit(0)
            children += 1
        print(children, error, flush=True)
        os.killpg(0, 9)
        """
    )
    code = (
        "import subprocess, sys\n"
        f"p = subprocess.run([sys.executable, '-c', {bomb!r}], capture_output=True, text=True)\n"
        "print(p.stdout.strip() or p.stderr[-300:])\n"
    )
    try:
        res = alice.execute(code, timeout=180)
    finally:
        stop.set()
        t.join(timeout=180)
    assert res.error is None, res.error
    children, error = res.stdout.strip().splitlines()[-1].split()
    assert error == "BlockingIOError" and int(children) < 200  # pids.max of the profile
    assert results and all(out == "42" for out, _ in results)
    assert alice.execute("print('alive')").stdout.strip() == "alive"


def test_trainee_configuration_cannot_change_what_the_server_serves(alice, running_hub):
    """alice writes Jupyter server config and a lab extension into her home and restarts her
    server: none of it is loaded (the hub's own generated configuration is all it reads)."""
    setup = textwrap.dedent(
        """
        import os, json
        home = os.path.expanduser("~")
        os.makedirs(f"{home}/.jupyter", exist_ok=True)
        os.makedirs(f"{home}/evil-static", exist_ok=True)
        open(f"{home}/evil-static/evil.html", "w").write("<script>alert(1)</script>")
        cfg = f"c.ServerApp.extra_static_paths = [{home + '/evil-static'!r}]\\n"
        cfg += "c.ServerApp.tornado_settings = {'headers': {'X-Evil': '1'}}\\n"
        for name in ("jupyter_server_config.py", "jupyter_notebook_config.py"):
            open(f"{home}/.jupyter/{name}", "w").write(cfg)
            open(f"{home}/{name}", "w").write(cfg)
        json.dump({"ServerApp": {"extra_static_paths": [home + "/evil-static"]}},
                  open(f"{home}/.jupyter/jupyter_server_config.json", "w"))
        ext = f"{home}/.local/share/jupyter/labextensions/evil-ext"
        os.makedirs(f"{ext}/static", exist_ok=True)
        json.dump({"name": "evil-ext", "version": "1.0.0",
                   "jupyterlab": {"_build": {"load": "static/remoteEntry.js"}}},
                  open(f"{ext}/package.json", "w"))
        open(f"{ext}/static/remoteEntry.js", "w").write("alert(1)")
        print("planted")
        """
    )
    assert alice.execute(setup).stdout.strip() == "planted"
    alice.restart_server()
    static = alice.client.get(f"{alice.server_url}/static/evil.html")
    assert static.status_code == 404
    lab = alice.client.get(f"{alice.server_url}/lab")
    assert lab.status_code == 200 and "evil-ext" not in lab.text
    assert "x-evil" not in {k.lower() for k in lab.headers}
