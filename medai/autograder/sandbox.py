"""One sandbox per submission: the ``SandboxBackend`` protocol and its local backends.

:class:`BubblewrapBackend` (the default) runs the runner in a bubblewrap sandbox: new user, PID,
network, IPC, UTS and cgroup namespaces (so no network at all, and the sandbox sees only its own
processes); a root file system made of read-only binds of what Python needs (``/usr``, the Python
installation, the virtualenv, the ``medai`` package, the public data and the job folder) plus a
size-limited tmpfs scratch space that is the only writable place; a scrubbed environment; and
``--die-with-parent``/``--new-session``. Resource limits:

- CPU time, address space (memory), file size, open files, core dumps: ``prlimit`` rlimits, which
  the whole sandbox inherits;
- processes: a ``pids`` cgroup (``RLIMIT_NPROC`` counts per real user, and inside a user namespace
  created by root every process *is* root outside, for which the kernel skips the check), and a
  ``memory`` cgroup for the sandbox as a whole (tmpfs pages included) where one can be created;
- wall clock and output: enforced by this (trusted) parent, which kills the process group and
  every process left in the cgroups.

Results come back over a pipe (one JSON object per line) read with a size cap; nothing in the
sandbox can write to the host. A job with an ``oracle`` (the simulated clinician of
active-learning tasks, :mod:`medai.autograder.oracle`) gets a second pipe: each ``oracle`` request
read from the result pipe is answered on it (``MEDAI_ORACLE_FD`` in the sandbox). A Kubernetes
backend only needs to implement ``run(job)``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from medai.autograder import GradingError


@dataclass(frozen=True)
class Limits:
    """Per-submission resource limits (``limits:`` in autograder/policy.yaml)."""

    wall_s: float = 120.0
    cpu_s: int = 120
    memory_mb: int = 3072
    processes: int = 64
    file_size_mb: int = 64
    scratch_mb: int = 256
    open_files: int = 256
    log_kb: int = 256
    result_mb: int = 64


@dataclass
class SandboxJob:
    job_dir: Path  # job.json, files/, inputs/ — mounted read-only at /job
    data_dir: Path | None  # the public data root (MEDAI_DATA), mounted read-only at /data
    limits: Limits = Limits()
    name: str = "job"
    # answers the job's label requests (medai.autograder.oracle.OracleServer.answer), if any
    oracle: Callable[[dict], dict] | None = None


@dataclass
class SandboxResult:
    status: str  # ok | timeout | crashed | output-limit
    records: list[dict] = field(default_factory=list)
    returncode: int | None = None
    wall_s: float = 0.0
    log: str = ""
    malformed_lines: int = 0
    notes: list[str] = field(default_factory=list)


class SandboxBackend(Protocol):
    """Runs one job in isolation and returns what came back. Implementations must be thread-safe."""

    name: str
    secure: bool

    def run(self, job: SandboxJob) -> SandboxResult: ...


# --------------------------------------------------------------------------- cgroups


class _Cgroups:
    """Per-sandbox ``pids`` (and, if possible, ``memory``) cgroups; v1 or v2."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.dirs: list[Path] = []
        self.pids = False
        self.memory = False
        own = _own_cgroups()
        unified = Path("/sys/fs/cgroup")
        if (unified / "cgroup.controllers").exists():  # cgroup v2
            base = unified / own.get("", "/").lstrip("/")
            ctrls = (base / "cgroup.subtree_control").read_text().split() if base.exists() else []
            d = self._make(base / name)
            if d and "pids" in ctrls:
                self.pids = self._write(d / "pids.max", str(limits.processes))
            if d and "memory" in ctrls:
                self.memory = self._write(d / "memory.max", str(_mem_bytes(limits)))
            return
        for ctrl, fname, value in (
            ("pids", "pids.max", str(limits.processes)),
            ("memory", "memory.limit_in_bytes", str(_mem_bytes(limits))),
        ):
            base = Path("/sys/fs/cgroup") / ctrl / own.get(ctrl, "/").lstrip("/")
            d = self._make(base / name)
            if d and self._write(d / fname, value):
                setattr(self, ctrl, True)
                if ctrl == "memory":
                    self._write(d / "memory.swappiness", "0")

    def _make(self, d: Path) -> Path | None:
        try:
            d.mkdir()
        except OSError:
            return None
        self.dirs.append(d)
        return d

    @staticmethod
    def _write(path: Path, value: str) -> bool:
        try:
            path.write_text(value)
            return True
        except OSError:
            return False

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def kill_and_remove(self) -> None:
        for _ in range(50):
            alive = False
            for d in self.dirs:
                try:
                    pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
                except OSError:
                    continue
                for pid in pids:
                    alive = True
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            if not alive:
                break
            time.sleep(0.05)
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _own_cgroups() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            for c in ctrls.split(","):
                out[c] = path
    except OSError:
        pass
    return out


def _mem_bytes(limits: Limits) -> int:
    return (limits.memory_mb + limits.scratch_mb * 2) * 1024 * 1024


# --------------------------------------------------------------------------- running


def _prlimit(limits: Limits, nproc: bool) -> list[str]:
    args = [
        "prlimit",
        f"--cpu={limits.cpu_s}",
        f"--as={limits.memory_mb * 1024 * 1024}",
        f"--fsize={limits.file_size_mb * 1024 * 1024}",
        f"--nofile={limits.open_files}",
        "--core=0",
    ]
    if nproc:
        args.append(f"--nproc={limits.processes}")
    return [*args, "--"]


def _read_capped(stream, cap: int, sink: list[bytes], over: threading.Event) -> None:
    """Drain ``stream`` keeping at most ``cap`` bytes; set ``over`` when more arrives."""
    size = 0
    while True:
        block = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not block:
            break
        if size < cap:
            sink.append(block[: cap - size])
        size += len(block)
        if size > cap:
            over.set()
    stream.close()


def _read_serving(
    stream,
    cap: int,
    sink: list[bytes],
    over: threading.Event,
    serve: Callable[[dict], dict],
    answer_fd: int,
) -> None:
    """:func:`_read_capped`, answering each ``oracle`` request line on ``answer_fd`` as it comes.

    A kernel that stops reading its answers fills the answer pipe and stalls here until the wall
    clock ends the run (the write then fails: the sandbox's end is gone).
    """
    size, pending = 0, b""
    answers = os.fdopen(answer_fd, "wb", buffering=0)
    try:
        while True:
            block = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not block:
                break
            if size < cap:
                sink.append(block[: cap - size])
            size += len(block)
            if size > cap:
                over.set()
                continue  # past the cap nothing more is read as a record, nor answered
            *lines, pending = (pending + block).split(b"\n")
            for line in lines:
                if b'"oracle"' not in line:
                    continue
                try:
                    rec = json.loads(line)
                except (ValueError, UnicodeDecodeError, RecursionError):
                    continue
                if isinstance(rec, dict) and rec.get("type") == "oracle":
                    try:
                        answers.write(json.dumps(serve(rec)).encode() + b"\n")
                    except OSError:  # the sandbox is gone
                        pass
    finally:
        stream.close()
        try:
            answers.close()
        except OSError:
            pass


def _execute(
    argv_for: Callable[[int, dict[str, str]], list[str]],
    cwd: Path,
    env: dict[str, str],
    job: SandboxJob,
    cg: _Cgroups,
) -> SandboxResult:
    """Run ``argv_for(result_fd, extra_env)`` inside ``cg``; enforce wall clock and output caps.

    ``extra_env`` names the answer pipe (``MEDAI_ORACLE_FD``) when the job has an oracle.
    """
    limits = job.limits
    r, w = os.pipe()
    answer_r = answer_w = None
    extra_env: dict[str, str] = {}
    if job.oracle is not None:
        answer_r, answer_w = os.pipe()
        extra_env["MEDAI_ORACLE_FD"] = str(answer_r)
    wrapper: list[str] = []
    if cg.dirs:  # join the cgroups before anything else runs, then exec the sandbox
        script = 'while [ "$1" != -- ]; do echo $$ > "$1"; shift; done; shift; exec "$@"'
        wrapper = ["/bin/sh", "-c", script, "sh", *cg.procs_files(), "--"]
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            wrapper + argv_for(w, extra_env),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(w,) if answer_r is None else (w, answer_r),
            start_new_session=True,
        )
    except BaseException:
        if answer_w is not None:
            os.close(answer_w)
        raise
    finally:
        os.close(w)
        if answer_r is not None:
            os.close(answer_r)
    result_chunks: list[bytes] = []
    log_chunks: list[bytes] = []
    result_over, log_over = threading.Event(), threading.Event()
    result_args = (os.fdopen(r, "rb"), limits.result_mb * 1024 * 1024, result_chunks, result_over)
    readers = [
        threading.Thread(target=_read_capped, args=result_args, daemon=True)
        if job.oracle is None
        else threading.Thread(
            target=_read_serving, args=(*result_args, job.oracle, answer_w), daemon=True
        ),
        threading.Thread(
            target=_read_capped,
            args=(proc.stdout, limits.log_kb * 1024, log_chunks, log_over),
            daemon=True,
        ),
    ]
    for t in readers:
        t.start()
    status = "ok"
    deadline = start + limits.wall_s
    while True:
        try:
            proc.wait(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            pass
        if result_over.is_set() or log_over.is_set():
            status = "output-limit"
            break
        if time.monotonic() > deadline:
            status = "timeout"
            break
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    cg.kill_and_remove()
    proc.wait()
    for t in readers:
        t.join(timeout=5)
    wall = time.monotonic() - start
    if status == "ok" and (result_over.is_set() or log_over.is_set()):
        status = "output-limit"
    records, malformed = [], 0
    for line in b"".join(result_chunks).splitlines():
        try:
            rec = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):  # nested past any depth, too
            malformed += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            malformed += 1
    done = any(rec.get("type") == "done" for rec in records)
    if status == "ok" and not done:
        # RLIMIT_CPU ends a busy loop with SIGKILL (soft = hard limit); seen from here that is
        # a kill after about cpu_s seconds of a single busy thread: a time-out, not a crash.
        cpu_killed = proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)
        status = "timeout" if cpu_killed and wall >= 0.8 * limits.cpu_s else "crashed"
    log = b"".join(log_chunks).decode("utf-8", "replace")
    return SandboxResult(status, records, proc.returncode, wall, log, malformed)


def _sandbox_env(data: bool) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/scratch",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MEDAI_GRADING": "1",
    }
    if data:
        env["MEDAI_DATA"] = "/data"
    return env


def _python_paths() -> list[Path]:
    """Folders the sandbox needs read-only to run this interpreter and import ``medai``."""
    import medai

    paths = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    pkg = Path(medai.__file__).resolve().parent
    if not any(pkg.is_relative_to(p) for p in paths):
        paths.add(pkg)  # an editable install: the package folder only, never the whole checkout
    return sorted(paths)


class BubblewrapBackend:
    """The local secure backend (bubblewrap + rlimits + cgroups)."""

    name = "bubblewrap"
    secure = True

    def __init__(self, bwrap: str | None = None) -> None:
        import shutil

        self.bwrap = bwrap or shutil.which("bwrap")
        if not self.bwrap:
            raise GradingError(
                "bubblewrap (`bwrap`) is not installed, so submissions cannot be sandboxed. "
                "Install it (Debian: apt-get install bubblewrap) or, only for trusted code, "
                "pass --insecure"
            )
        if not shutil.which("prlimit"):
            raise GradingError("`prlimit` (util-linux) is missing; install util-linux")

    def _argv(self, job: SandboxJob) -> list[str]:
        lim = job.limits
        a = [self.bwrap, "--unshare-all", "--unshare-user", "--uid", "1000", "--gid", "1000"]
        a += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "grader"]
        # Fresh /proc, /dev and the tmpfs mounts first: binds below may live under /tmp (a
        # checkout in /tmp, say) and must not be hidden by the private /tmp mounted over them.
        a += ["--proc", "/proc", "--dev", "/dev"]
        a += ["--size", str(lim.scratch_mb * 1024 * 1024), "--tmpfs", "/scratch"]
        a += ["--size", str(64 * 1024 * 1024), "--tmpfs", "/tmp"]
        a += ["--ro-bind", "/usr", "/usr"]
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            p = Path("/") / top
            if p.is_symlink():
                a += ["--symlink", os.readlink(p), str(p)]
            elif p.is_dir():
                a += ["--ro-bind", str(p), str(p)]
        for etc in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf"):
            a += ["--ro-bind-try", f"/etc/{etc}", f"/etc/{etc}"]
        a += ["--ro-bind", str(job.job_dir / "etc" / "passwd"), "/etc/passwd"]
        a += ["--ro-bind", str(job.job_dir / "etc" / "group"), "/etc/group"]
        for p in _python_paths():
            a += ["--ro-bind", str(p), str(p)]
        a += ["--ro-bind", str(job.job_dir), "/job"]
        if job.data_dir is not None:
            a += ["--ro-bind", str(job.data_dir), "/data"]
        a += ["--remount-ro", "/", "--chdir", "/scratch", "--clearenv"]
        return a

    def run(self, job: SandboxJob) -> SandboxResult:
        job.job_dir = job.job_dir.resolve()
        if job.data_dir is not None:
            job.data_dir = job.data_dir.resolve()
        etc = job.job_dir / "etc"
        etc.mkdir(exist_ok=True)
        (etc / "passwd").write_text("trainee:x:1000:1000:trainee:/scratch:/bin/sh\n")
        (etc / "group").write_text("trainee:x:1000:\n")
        cg = _Cgroups(f"medai-grade-{uuid.uuid4().hex[:12]}", job.limits)
        notes = []
        if not cg.pids:
            if os.geteuid() == 0:
                cg.kill_and_remove()
                raise GradingError(
                    "cannot limit the number of processes: running as root without a writable "
                    "pids cgroup (RLIMIT_NPROC does not apply to root). Run the grader as an "
                    "unprivileged user, or give it a cgroup (e.g. a delegated systemd scope)"
                )
            notes.append("process limit via RLIMIT_NPROC (per user)")
        env = _sandbox_env(job.data_dir is not None)

        def argv_for(fd: int, extra_env: dict[str, str]) -> list[str]:
            argv = _prlimit(job.limits, nproc=not cg.pids) + self._argv(job)
            for k, v in {**env, "MEDAI_RESULT_FD": str(fd), **extra_env}.items():
                argv += ["--setenv", k, v]
            return [*argv, sys.executable, "-I", "-m", "medai.autograder.runner", "/job"]

        res = _execute(argv_for, job.job_dir, {"PATH": "/usr/bin:/bin"}, job, cg)
        res.notes = notes + (["memory cgroup"] if cg.memory else [])
        return res


class InsecureBackend:
    """No isolation beyond rlimits and a scrubbed environment. Only with an explicit flag."""

    name = "insecure"
    secure = False

    def run(self, job: SandboxJob) -> SandboxResult:
        import shutil
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="medai-insecure-"))
        try:
            env = _sandbox_env(job.data_dir is not None)
            env["HOME"] = str(scratch)
            if job.data_dir is not None:
                env["MEDAI_DATA"] = str(job.data_dir)
            cg = _Cgroups(f"medai-grade-{uuid.uuid4().hex[:12]}", job.limits)
            argv = _prlimit(job.limits, nproc=not cg.pids and os.geteuid() != 0)
            argv += [sys.executable, "-I", "-m", "medai.autograder.runner", str(job.job_dir)]

            def argv_for(fd: int, extra_env: dict[str, str]) -> list[str]:
                env.update({"MEDAI_RESULT_FD": str(fd), **extra_env})
                return argv

            res = _execute(argv_for, scratch, env, job, cg)
            res.notes.append("INSECURE: no file system or network isolation")
            return res
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def get_backend(insecure: bool = False) -> SandboxBackend:
    """The bubblewrap backend, or the insecure one when explicitly asked for."""
    if insecure:
        return InsecureBackend()
    return BubblewrapBackend()
