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

The sandbox itself is the *grading job* profile of :mod:`medai.isolation` (one bubblewrap
builder, one limits object, one cgroup implementation for every sandbox of the project).
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
from medai.isolation import bwrap, profiles
from medai.isolation.cgroups import Cgroup, join_argv
from medai.isolation.limits import Limits
from medai.isolation.rlimits import prlimit_argv, read_block, read_capped

__all__ = ["Limits", "SandboxJob", "SandboxResult", "BubblewrapBackend", "InsecureBackend"]


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


# --------------------------------------------------------------------------- running


def _read_serving(
    stream,
    cap: int,
    sink: list[bytes],
    over: threading.Event,
    serve: Callable[[dict], dict],
    answer_fd: int,
) -> None:
    """:func:`~medai.isolation.rlimits.read_capped`, answering each ``oracle`` request line on ``answer_fd`` as it comes.

    A kernel that stops reading its answers fills the answer pipe and stalls here until the wall
    clock ends the run (the write then fails: the sandbox's end is gone).
    """
    size, pending = 0, b""
    answers = os.fdopen(answer_fd, "wb", buffering=0)
    try:
        while True:
            block = read_block(stream)
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
    cg: Cgroup,
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
    wrapper = join_argv(cg)  # join the cgroups before anything else runs, then exec
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
        threading.Thread(target=read_capped, args=result_args, daemon=True)
        if job.oracle is None
        else threading.Thread(
            target=_read_serving, args=(*result_args, job.oracle, answer_w), daemon=True
        ),
        threading.Thread(
            target=read_capped,
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
    env = dict(profiles.JOB_ENV) | {"MEDAI_GRADING": "1"}
    if data:
        env["MEDAI_DATA"] = "/data"
    return env


def _python_paths() -> list[Path]:
    """Folders the sandbox needs read-only to run this interpreter and import ``medai``."""
    return [Path(p) for p in bwrap.Software.detect().paths]


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

    def _argv(self, job: SandboxJob, env: dict[str, str] | None = None) -> list[str]:
        profile = profiles.grading_job(
            job.job_dir, job.data_dir, bwrap.Software.detect(), job.limits, env or {}
        )
        return bwrap.argv(profile, self.bwrap)

    def run(self, job: SandboxJob) -> SandboxResult:
        job.job_dir = job.job_dir.resolve()
        if job.data_dir is not None:
            job.data_dir = job.data_dir.resolve()
        bwrap.write_identity(job.job_dir / "etc", "trainee", "/scratch", shell="/bin/sh")
        cg = Cgroup.create(f"medai-grade-{uuid.uuid4().hex[:12]}", job.limits)
        notes = []
        if "processes" not in cg.enforced:
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
            nproc = "processes" not in cg.enforced
            argv = prlimit_argv(job.limits, nproc=nproc)
            argv += self._argv(job, {**env, "MEDAI_RESULT_FD": str(fd), **extra_env})
            return [*argv, sys.executable, "-I", "-m", "medai.autograder.runner", "/job"]

        res = _execute(argv_for, job.job_dir, {"PATH": "/usr/bin:/bin"}, job, cg)
        res.notes = notes + (["memory cgroup"] if "memory" in cg.enforced else [])
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
            cg = Cgroup.create(f"medai-grade-{uuid.uuid4().hex[:12]}", job.limits)
            nproc = "processes" not in cg.enforced and os.geteuid() != 0
            argv = prlimit_argv(job.limits, nproc=nproc)
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
