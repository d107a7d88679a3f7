"""The isolation module on its own: limits as data, cgroups, quotas, and the server launcher
(a real bubblewrap sandbox with its own network namespace, no hub)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from medai.isolation import bwrap, cgroups, launch, quota
from medai.isolation.limits import Limits, parse_mb


def test_limits_round_trip_and_refuse_unknown_keys():
    lim = Limits.server(memory_mb=2048, cpus=1.5, processes=300)
    assert Limits.from_dict(lim.as_dict()) == lim
    with pytest.raises(ValueError, match="unknown limit"):
        Limits.from_dict({"memory_mb": 1, "memroy_mb": 2})
    assert lim.k8s_resources()["limits"] == {"memory": "2048Mi", "cpu": "1500m"}
    assert lim.cgroup_memory_bytes() == (2048 + lim.tmp_mb + lim.shm_mb) * 2**20


@pytest.mark.parametrize(
    ("text", "mb"), [("4G", 4096), ("512M", 512), ("1.5Gi", 1536), ("2048K", 2), (2**30, 1024)]
)
def test_parse_mb(text, mb):
    assert parse_mb(text) == mb


def test_parse_mb_says_what_is_wrong():
    with pytest.raises(ValueError, match="not a memory size: 'lots'"):
        parse_mb("lots")


def test_cgroup_probe_reports_what_took():
    p = cgroups.probe()
    if os.geteuid() == 0:  # CI and this machine: root with writable v1/v2 controllers
        assert {"memory", "processes"} <= p.enforced
    assert "enforced" in p.describe()
    if not p.complete:
        assert "NOT enforced" in p.describe()


def test_quota_probe_names_the_filesystem(tmp_path, monkeypatch):
    monkeypatch.setattr(
        quota,
        "_mounts",
        lambda: [("/", "ext4", {"rw"}), (str(tmp_path), "xfs", {"rw", "pquota"})],
    )
    assert quota.probe(tmp_path / "homes").project
    assert "project quotas" in quota.probe(tmp_path).describe()
    other = quota.probe(Path("/usr"))
    assert not other.project and "NOT available" in other.describe()


def test_pasta_has_no_route_and_no_gateway_mapping():
    a = launch.pasta_argv("pasta", 123, 8888, [8081], "/tmp/p.pid")
    assert a[a.index("--tcp-ports") + 1] == "127.0.0.1/8888"  # host loopback only
    assert a[a.index("--tcp-ns") + 1] == "8081"  # the hub API, nothing else out
    assert "--no-map-gw" in a and a[a.index("--udp-ns") + 1] == "none"
    assert "--config-net" not in a  # no address, no default route in the namespace


SERVER = textwrap.dedent(
    """
    import http.server, socket, socketserver, sys
    port, inner = int(sys.argv[1]), int(sys.argv[2])
    side = socket.socket(); side.bind(("127.0.0.1", inner)); side.listen(1)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            s = socket.socket(); s.settimeout(1)
            outside = s.connect_ex(("127.0.0.1", OUTSIDE))  # a host port: must be refused
            self.send_response(200); self.end_headers()
            self.wfile.write(f"inside uid={__import__('os').getuid()} outside={outside}".encode())
        def log_message(self, *a):
            pass
    socketserver.TCPServer(("127.0.0.1", port), H).serve_forever()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_launcher_forwards_only_the_server_port_and_cleans_up(tmp_path):
    host_only = socket.socket()
    host_only.bind(("127.0.0.1", 0))
    host_only.listen(1)
    outside = host_only.getsockname()[1]
    port, inner = _free_port(), _free_port()
    ident = bwrap.write_identity(tmp_path / "etc", "alice", "/tmp")
    profile = bwrap.Profile(
        name="test",
        hostname="t",
        identity=ident,
        software=bwrap.Software.detect(),
        tmpfs=(("/tmp", 16),),
        network="forward",
    )
    limits = Limits.server(memory_mb=256, cpus=1.0, processes=32)
    name = f"medai-test-{os.getpid()}"
    code = SERVER.replace("OUTSIDE", str(outside))
    cmd = launch.command(
        name,
        limits,
        bwrap.argv(profile),
        [sys.executable, "-c", code, str(port), str(inner)],
        forward=port,
    )
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        body = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and body is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    data = s.recv(4096).decode()
                    if "inside" in data:
                        body = data
            except OSError:
                time.sleep(0.1)
        assert body is not None, proc.stderr.read() if proc.poll() is not None else "no answer"
        assert "uid=1000" in body
        assert "outside=111" in body  # ECONNREFUSED: the host's loopback is not reachable
        # the server's other port exists only inside its namespace
        probe = socket.socket()
        assert probe.connect_ex(("127.0.0.1", inner)) != 0 or probe.getsockname()[1] == inner
        probe.close()
        proc.terminate()  # the hub stops a server this way: passed on to the sandbox
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        host_only.close()
    # nothing left behind: no cgroup, no port forward
    assert list(Path("/sys/fs/cgroup").rglob(name)) == []
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


@pytest.mark.slow
def test_a_sandbox_that_dies_while_being_set_up_is_retried_then_reported(tmp_path):
    """bubblewrap ending before the server may run (here: a bind whose source is missing) is
    tried again, then reported with the launcher's own exit code; nothing is left behind."""
    ident = bwrap.write_identity(tmp_path / "etc", "alice", "/tmp")
    profile = bwrap.Profile(
        name="test",
        hostname="t",
        identity=ident,
        software=bwrap.Software.detect(),
        binds=(bwrap.Bind(str(tmp_path / "missing"), "/missing"),),
        network="forward",
    )
    name = f"medai-test-dies-{os.getpid()}"
    cmd = launch.command(
        name, Limits.server(memory_mb=256, cpus=None), bwrap.argv(profile), ["true"], forward=1
    )
    cmd[cmd.index("--forward") + 1] = str(_free_port())
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 70, res.stderr
    assert f"attempt {launch.START_ATTEMPTS}:" in res.stderr
    assert "the sandbox did not start" in res.stderr
    assert list(Path("/sys/fs/cgroup").rglob(name)) == []
