"""Run a long-lived server (a trainee's JupyterLab, the formgrader) in its sandbox.

``python -m medai.isolation.launch [options] -- BWRAP-ARGV... -- SERVER-ARGV...`` is the command
the hub starts. This small trusted process, outside the sandbox:

1. creates the sandbox's cgroup (memory, processes, CPU; :mod:`medai.isolation.cgroups`) and
   starts bubblewrap inside it, so every process of the server is counted;
2. for ``--forward PORT``: bubblewrap gives the server a network namespace of its own (only
   loopback); once it exists, pasta (Debian ``passt``) attaches to it and forwards the host's
   ``127.0.0.1:PORT`` in (the proxy reaches the server) and the namespace's ``127.0.0.1:HUBPORT``
   out to the hub's API (the server reaches the hub). Nothing else crosses: not another trainee's
   ports, not their kernels, not abstract Unix sockets (those are per network namespace), not the
   outside world (the namespace has no route);
3. only then lets the server start (bubblewrap's ``--block-fd``), waits for it, passes SIGTERM and
   SIGINT on, and on exit kills whatever is left in the cgroup and removes it.

The hub's spawner sees one process; stopping it stops everything. pasta is the tool rootless
containers use for this (podman); this module only wires it up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from medai.isolation.cgroups import Cgroup, join_argv
from medai.isolation.limits import Limits


class LaunchFailed(RuntimeError):
    pass


def find_pasta() -> str:
    path = shutil.which("pasta")
    if not path:
        raise LaunchFailed(
            "pasta is not installed; it gives every trainee's server its own network. "
            "Install it (Debian/Ubuntu: apt-get install passt) and start again."
        )
    return path


def pasta_argv(pasta: str, pid: int, port: int, hub_port: int | None, pid_file: str) -> list[str]:
    """pasta attached to ``pid``'s network namespace: ``port`` in, ``hub_port`` out, no route.

    pasta goes to the background once the forwards are in place and writes its pid to
    ``pid_file``; it holds the namespace open, so the launcher stops it when the server ends.
    """
    a = [pasta, "--quiet", "--netns", f"/proc/{pid}/ns/net", "--pid", pid_file]
    if os.geteuid() == 0:
        a += ["--runas", "0:0"]  # pasta would switch to nobody, who cannot enter the namespace
    a += ["--tcp-ports", f"127.0.0.1/{port}"]
    a += ["--tcp-ns", str(hub_port) if hub_port else "none"]
    a += ["--udp-ports", "none", "--udp-ns", "none", "--no-map-gw", "--no-icmp"]
    a += ["--no-dhcp", "--no-dhcpv6", "--no-ndp", "--no-ra", "--ipv4-only"]
    return a


def _read_info(fd: int, timeout: float = 30) -> dict:
    """bubblewrap's ``--info-fd`` JSON (it holds the sandbox's pid)."""
    data = b""
    deadline = time.monotonic() + timeout
    with os.fdopen(fd, "rb", buffering=0) as fh:
        while time.monotonic() < deadline:
            chunk = fh.read(4096)
            if not chunk:
                break
            data += chunk
            try:
                return json.loads(data)
            except ValueError:
                continue
    raise LaunchFailed(f"bubblewrap did not start the sandbox (info: {data[:200]!r})")


def run(
    name: str,
    limits: Limits,
    bwrap_argv: list[str],
    server_argv: list[str],
    *,
    forward: int | None,
    hub_port: int | None,
    require_limits: bool = False,
) -> int:
    phases = Phases()
    cg = Cgroup.create(name, limits)
    # A server's cgroup name is stable (the class service finds it to measure its memory), so
    # a folder left by a launcher that was killed outright may still hold processes of that
    # user's previous server: the hub runs one server per user, so they are stale.
    cg.kill_all()
    phases.mark("cgroup")
    if require_limits and not {"memory", "processes"} <= cg.enforced:
        cg.kill_and_remove()
        raise LaunchFailed(
            f"cannot enforce the sandbox's limits (only {sorted(cg.enforced)}): run as root "
            "or in a delegated cgroup"
        )
    proc = None
    pasta_pid_file = None
    try:
        extra_fds: tuple[int, ...] = ()
        argv = list(bwrap_argv)
        info_r = blk_w = None
        if forward:
            pasta = find_pasta()
            info_r, info_w = os.pipe()
            blk_r, blk_w = os.pipe()
            # insert the fds after the executable: bwrap reads options before "--"
            argv[1:1] = ["--info-fd", str(info_w), "--block-fd", str(blk_r)]
            extra_fds = (info_w, blk_r)
        prlimits = [
            "prlimit",
            f"--nofile={limits.open_files}",
            f"--fsize={limits.file_size_mb << 20}",
        ]
        if not cg.enforced >= {"processes"} and os.geteuid() != 0:
            prlimits.append(f"--nproc={limits.processes}")
        full = join_argv(cg) + prlimits + ["--"] + argv + server_argv
        proc = subprocess.Popen(full, pass_fds=extra_fds)
        for fd in extra_fds:
            os.close(fd)
        phases.mark("popen")

        def _pass_on(signum, frame):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, _pass_on)

        if forward:
            info = _read_info(info_r)
            pid = int(info["child-pid"])
            _wait_for_loopback(pid)
            phases.mark("bwrap")
            fd, pasta_pid_file = tempfile.mkstemp(prefix="medai-pasta-", suffix=".pid")
            os.close(fd)
            r = subprocess.run(
                pasta_argv(pasta, pid, forward, hub_port, pasta_pid_file),
                capture_output=True,
                text=True,
            )
            if r.returncode != 0:
                proc.kill()
                raise LaunchFailed(f"pasta could not connect the sandbox: {r.stderr.strip()}")
            os.write(blk_w, b"1")
            os.close(blk_w)
            phases.mark("pasta")
        phases.report(name)
        return proc.wait()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        cg.kill_and_remove()
        if pasta_pid_file:
            _stop_pid_file(pasta_pid_file)


def _wait_for_loopback(pid: int, timeout: float = 10) -> None:
    """Wait until bubblewrap has set up the sandbox's loopback interface.

    bubblewrap reports the sandbox's pid (``--info-fd``) before its child configures ``lo``
    in the new network namespace; pasta attaching in that window configures ``lo`` too, and
    bubblewrap's own request then fails ("loopback: Failed RTM_NEWADDR") and the sandbox
    dies. Seen when the sandbox's cgroup has a low CPU weight and the machine is busy. The
    namespace's routing table (``/proc/PID/net/fib_trie``) lists 127.0.0.1 once ``lo`` is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/net/fib_trie", encoding="ascii", errors="replace") as fh:
                if "127.0.0.1" in fh.read():
                    return
        except OSError:  # the sandbox ended: bubblewrap says why on stderr
            raise LaunchFailed("bubblewrap exited before the sandbox's network was up") from None
        time.sleep(0.002)
    raise LaunchFailed(f"the sandbox's loopback interface was not up within {timeout:.0f} s")


class Phases:
    """Wall-clock time of each launch phase, printed as one line the benchmark reads:
    ``medai-launch NAME {"start": EPOCH, "cgroup": S, "popen": S, "bwrap": S, "pasta": S}``
    (``start``: when this process began; each phase: seconds after the one before)."""

    PREFIX = "medai-launch"

    def __init__(self) -> None:
        self.start = _STARTED_AT
        self.last = _STARTED_AT
        self.times: dict[str, float] = {"start": _STARTED_AT}

    def mark(self, phase: str) -> None:
        now = time.time()
        self.times[phase] = round(now - self.last, 4)
        self.last = now

    def report(self, name: str) -> None:
        print(f"{self.PREFIX} {name} {json.dumps(self.times)}", file=sys.stderr, flush=True)


_STARTED_AT = time.time()


def _stop_pid_file(path: str) -> None:
    try:
        pid = int(open(path).read().strip() or 0)
    except (OSError, ValueError):
        pid = 0
    if pid > 1:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(OSError):
        os.unlink(path)


def command(
    name: str,
    limits: Limits,
    bwrap_argv: list[str],
    server_argv: list[str],
    *,
    forward: int | None = None,
    hub_port: int | None = None,
) -> list[str]:
    """The command line that runs ``server_argv`` in the sandbox ``bwrap_argv`` describes."""
    cmd = [sys.executable, "-m", "medai.isolation.launch", "--name", name]
    cmd += ["--limits", json.dumps(limits.as_dict(), separators=(",", ":"))]
    if forward:
        cmd += ["--forward", str(forward)]
    if hub_port:
        cmd += ["--hub-port", str(hub_port)]
    assert bwrap_argv[-1] == "--"
    return [*cmd, "--", *bwrap_argv, *server_argv]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m medai.isolation.launch")
    ap.add_argument("--name", required=True, help="cgroup name (unique per sandbox)")
    ap.add_argument("--limits", required=True, help="JSON of medai.isolation.limits.Limits")
    ap.add_argument("--forward", type=int, help="TCP port forwarded into the sandbox")
    ap.add_argument("--hub-port", type=int, help="the hub API port reachable from inside")
    ap.add_argument("--require-limits", action="store_true")
    try:
        split = argv.index("--")
    except ValueError:
        ap.error("expected -- BWRAP-ARGV... -- SERVER-ARGV...")
    opts = ap.parse_args(argv[:split])
    rest = argv[split + 1 :]
    try:
        inner = rest.index("--")
    except ValueError:
        ap.error("the bubblewrap arguments must end with --")
    bwrap_argv, server_argv = rest[: inner + 1], rest[inner + 1 :]
    # the spawner appends its own server arguments (--port ...) at the very end
    try:
        return run(
            opts.name,
            Limits.from_dict(json.loads(opts.limits)),
            bwrap_argv,
            server_argv,
            forward=opts.forward,
            hub_port=opts.hub_port,
            require_limits=opts.require_limits,
        )
    except LaunchFailed as exc:
        print(f"medai.isolation.launch: {exc}", file=sys.stderr, flush=True)
        return 70


if __name__ == "__main__":
    sys.exit(main())
