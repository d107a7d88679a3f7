"""Run a long-lived server (a trainee's JupyterLab, the formgrader) in its sandbox.

``python -m medai.isolation.launch [options] -- BWRAP-ARGV... -- SERVER-ARGV...`` is the command
the hub starts. This small trusted process, outside the sandbox:

1. creates the sandbox's cgroup (memory, processes, CPU; :mod:`medai.isolation.cgroups`) and
   starts bubblewrap inside it, so every process of the server is counted;
2. for ``--forward PORT``: bubblewrap gives the server a network namespace of its own (only
   loopback); once it exists, pasta (Debian ``passt``) attaches to it and forwards the host's
   ``127.0.0.1:PORT`` in (the proxy reaches the server) and, for each ``--outbound P``, the
   namespace's ``127.0.0.1:P`` out to the host's (the hub's API; for the formgrader also the
   grading service). Nothing else crosses: not another trainee's
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


def pasta_argv(pasta: str, pid: int, port: int, outbound: list[int], pid_file: str) -> list[str]:
    """pasta attached to ``pid``'s network namespace: ``port`` in, the ``outbound`` ports of the
    host's loopback (the hub's API) out, no route.

    pasta goes to the background once the forwards are in place and writes its pid to
    ``pid_file``; it holds the namespace open, so the launcher stops it when the server ends.
    """
    a = [pasta, "--quiet", "--netns", f"/proc/{pid}/ns/net", "--pid", pid_file]
    if os.geteuid() == 0:
        a += ["--runas", "0:0"]  # pasta would switch to nobody, who cannot enter the namespace
    a += ["--tcp-ports", f"127.0.0.1/{port}"]
    a += ["--tcp-ns", ",".join(str(p) for p in outbound) if outbound else "none"]
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
    outbound: list[int],
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
    state = {"proc": None, "pasta": None}

    def _pass_on(signum, frame):
        proc = state["proc"]
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, _pass_on)
    try:
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                _start(cg, limits, bwrap_argv, server_argv, forward, outbound, state, phases)
                break
            except _DiedBeforeStart as exc:
                # bubblewrap gave up while setting up the namespaces (the kernel now and then
                # refuses the loopback address of a fresh network namespace): nothing of the
                # server ran yet, so starting again is safe.
                print(f"medai.isolation.launch: attempt {attempt}: {exc}", file=sys.stderr)
                if attempt == START_ATTEMPTS:
                    raise LaunchFailed(f"the sandbox did not start: {exc}") from None
                if state["pasta"]:
                    _stop_pid_file(state["pasta"])
                    state["pasta"] = None
                time.sleep(0.2 * attempt)
        phases.report(name)
        return state["proc"].wait()
    finally:
        proc = state["proc"]
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        cg.kill_and_remove()
        if state["pasta"]:
            _stop_pid_file(state["pasta"])


START_ATTEMPTS = 3


class _DiedBeforeStart(RuntimeError):
    pass


def _start(
    cg: Cgroup,
    limits: Limits,
    bwrap_argv: list[str],
    server_argv: list[str],
    forward: int | None,
    outbound: list[int],
    state: dict,
    phases: Phases,
) -> None:
    """Start bubblewrap in ``cg``; with ``forward``, connect its namespace with pasta and only
    then let the server run. Raises :class:`_DiedBeforeStart` if the sandbox ended first."""
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
    state["proc"] = proc
    for fd in extra_fds:
        os.close(fd)
    phases.mark("popen")
    if not forward:
        return
    try:
        info = _read_info(info_r)
    except LaunchFailed as exc:
        proc.wait()
        raise _DiedBeforeStart(str(exc)) from None
    pid = int(info["child-pid"])
    try:
        _wait_for_loopback(pid)
    except LaunchFailed as exc:
        proc.wait()
        raise _DiedBeforeStart(str(exc)) from None
    phases.mark("bwrap")
    fd, state["pasta"] = tempfile.mkstemp(prefix="medai-pasta-", suffix=".pid")
    os.close(fd)
    r = subprocess.run(
        pasta_argv(pasta, pid, forward, outbound, state["pasta"]), capture_output=True, text=True
    )
    if r.returncode != 0:
        # the sandbox died under pasta (its namespace went away): bubblewrap may still be
        # reaping it, so give it a moment before calling this a pasta failure
        if not os.path.exists(f"/proc/{pid}") or _exits_soon(proc):
            proc.wait()
            raise _DiedBeforeStart(f"pasta: {r.stderr.strip()}")
        proc.kill()
        proc.wait()
        raise LaunchFailed(f"pasta could not connect the sandbox: {r.stderr.strip()}")
    try:
        os.write(blk_w, b"1")
    except BrokenPipeError:
        proc.wait()
        raise _DiedBeforeStart(f"bubblewrap exited with {proc.returncode}") from None
    finally:
        os.close(blk_w)
    phases.mark("pasta")


def _exits_soon(proc: subprocess.Popen, grace: float = 2.0) -> bool:
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        return False
    return True


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
            for _ in range(100):  # not our child (it daemonised): wait for it to be gone
                time.sleep(0.02)
                os.kill(pid, 0)
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.unlink(path)


def command(
    name: str,
    limits: Limits,
    bwrap_argv: list[str],
    server_argv: list[str],
    *,
    forward: int | None = None,
    outbound: list[int] = (),
) -> list[str]:
    """The command line that runs ``server_argv`` in the sandbox ``bwrap_argv`` describes."""
    cmd = [sys.executable, "-m", "medai.isolation.launch", "--name", name]
    cmd += ["--limits", json.dumps(limits.as_dict(), separators=(",", ":"))]
    if forward:
        cmd += ["--forward", str(forward)]
    for port in outbound:
        cmd += ["--outbound", str(port)]
    assert bwrap_argv[-1] == "--"
    return [*cmd, "--", *bwrap_argv, *server_argv]


def _die_with_parent() -> None:
    """Get SIGTERM when the process that started us (the hub) dies, however it dies: bubblewrap's
    own --die-with-parent watches this launcher, so the whole sandbox then goes too."""
    import ctypes

    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m medai.isolation.launch")
    ap.add_argument("--name", required=True, help="cgroup name (unique per sandbox)")
    ap.add_argument("--limits", required=True, help="JSON of medai.isolation.limits.Limits")
    ap.add_argument("--forward", type=int, help="TCP port forwarded into the sandbox")
    ap.add_argument(
        "--outbound",
        type=int,
        action="append",
        default=[],
        help="a host loopback port reachable from inside (the hub's API); repeatable",
    )
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
    _die_with_parent()
    # the spawner appends its own server arguments (--port ...) at the very end
    try:
        return run(
            opts.name,
            Limits.from_dict(json.loads(opts.limits)),
            bwrap_argv,
            server_argv,
            forward=opts.forward,
            outbound=opts.outbound,
            require_limits=opts.require_limits,
        )
    except LaunchFailed as exc:
        print(f"medai.isolation.launch: {exc}", file=sys.stderr, flush=True)
        return 70


if __name__ == "__main__":
    sys.exit(main())
