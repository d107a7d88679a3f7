"""Run one analysis job in the data-job sandbox and read back what it returned (trusted side).

The job folder holds ``job.json`` (the code and the function's name) and the generated
``/etc/passwd``; :func:`medai.isolation.profiles.data_job` binds it and the one private dataset
read-only, with no network and a sized scratch. Limits: a cgroup (memory, processes) plus
rlimits (CPU seconds, address space, file size, open files) and a wall clock enforced here.

What comes back is untrusted: the result pipe is read with a size cap, each line parsed with
bounded depth, and only a record of the expected shape is used (:func:`parse_records`). The
job's stdout and stderr are never read: they may carry patients' values.
"""

from __future__ import annotations

import builtins
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from medai.isolation import bwrap, profiles
from medai.isolation.cgroups import Cgroup, join_argv
from medai.isolation.limits import Limits

MAX_DEPTH = 8
MAX_COLUMNS = 64
# exception names reported to the trainee: builtins only; any other class is "Exception", so a
# class named after a patient's value carries nothing out
_BUILTIN_ERRORS = frozenset(
    n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)
) | {"NotAnOutput"}


def job_limits(wall_s: float) -> Limits:
    return Limits(
        memory_mb=2048,
        processes=32,
        cpu_s=max(5, int(wall_s)),
        wall_s=wall_s,
        scratch_mb=128,
        tmp_mb=64,
        shm_mb=16,
        log_kb=0,
        result_mb=16,
    )


@dataclass
class JobOutcome:
    status: str  # ok | error | timeout | crashed | output-limit | malformed
    record: dict | None = None  # the parsed result record (status ok)
    error: str | None = None  # an exception's type name (status error)
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def _depth_ok(obj, depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        return False
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _depth_ok(v, depth + 1) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_depth_ok(v, depth + 1) for v in obj)
    return obj is None or isinstance(obj, (str, int, float, bool))


def parse_records(raw: bytes, n_rows: int) -> tuple[str, dict | None, str | None]:
    """``(status, record, error)`` from the bytes of the result pipe."""
    result = error = None
    done = False
    for line in raw.splitlines()[:16]:
        try:
            rec = json.loads(line, parse_constant=lambda c: None)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return "malformed", None, None
        if not isinstance(rec, dict) or not _depth_ok(rec):
            return "malformed", None, None
        kind = rec.get("type")
        if kind == "done":
            done = True
        elif kind == "result" and result is None and error is None:
            result = rec
        elif kind == "error" and result is None and error is None:
            name = rec.get("exc")
            error = name if isinstance(name, str) and name in _BUILTIN_ERRORS else "Exception"
    if not done:
        return "crashed", None, None
    if error is not None:
        return "error", None, error
    if result is None:
        return "malformed", None, None
    cols, req = result.get("columns"), result.get("request")
    if not isinstance(cols, dict) or not isinstance(req, dict) or len(cols) > MAX_COLUMNS:
        return "malformed", None, None
    lengths = {len(v) for v in cols.values() if isinstance(v, list)}
    if len(lengths) != 1 or not all(isinstance(v, list) for v in cols.values()):
        return "malformed", None, None
    if lengths.pop() > n_rows:  # more rows than the data has: fabricated
        return "malformed", None, None
    for v in cols.values():
        for x in v:
            if isinstance(x, float) and not math.isfinite(x):
                return "malformed", None, None
    return "ok", result, None


def _drain(stream, cap: int, sink: list[bytes], over: threading.Event) -> None:
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


def run_job(
    jobs_root: Path,
    private_dir: Path,
    code: str,
    function: str,
    n_rows: int,
    *,
    wall_s: float = 60,
    bwrap_exe: str | None = None,
) -> JobOutcome:
    """Run ``function`` of ``code`` on the private data in ``private_dir`` in its sandbox."""
    exe = bwrap_exe or bwrap.find_bwrap()
    limits = job_limits(wall_s)
    job_dir = (jobs_root / uuid.uuid4().hex).resolve()
    job_dir.mkdir(parents=True, mode=0o700)
    try:
        (job_dir / "job.json").write_text(json.dumps({"code": code, "function": function}))
        bwrap.write_identity(job_dir / "etc", "analyst", "/scratch", shell="/bin/sh")
        os.chmod(job_dir, 0o755)  # the sandbox's user (mapped) must be able to read it
        cg = Cgroup.create(f"medai-datajob-{job_dir.name[:12]}", limits)
        if "processes" not in cg.enforced and os.geteuid() == 0:
            cg.kill_and_remove()
            raise RuntimeError("cannot limit a data job's processes: no writable pids cgroup")
        r, w = os.pipe()
        env = {"MEDAI_RESULT_FD": str(w), "MEDAI_SANDBOX_JOB": "1"}
        profile = profiles.data_job(
            job_dir, private_dir.resolve(), bwrap.Software.detect(), limits, env
        )
        prl = [
            "prlimit",
            f"--cpu={limits.cpu_s}",
            f"--as={limits.memory_mb << 20}",
            f"--fsize={limits.file_size_mb << 20}",
            f"--nofile={limits.open_files}",
            "--core=0",
        ]
        if "processes" not in cg.enforced:
            prl.append(f"--nproc={limits.processes}")
        argv = join_argv(cg) + prl + ["--"] + bwrap.argv(profile, exe)
        argv += [sys.executable, "-I", "-m", "medai.sandbox.runner", "/job"]
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=job_dir,
                env={"PATH": "/usr/bin:/bin"},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(w,),
                start_new_session=True,
            )
        finally:
            os.close(w)
        chunks: list[bytes] = []
        over = threading.Event()
        reader = threading.Thread(
            target=_drain,
            args=(os.fdopen(r, "rb"), limits.result_mb << 20, chunks, over),
            daemon=True,
        )
        reader.start()
        status = None
        while True:
            try:
                proc.wait(timeout=0.02)
                break
            except subprocess.TimeoutExpired:
                pass
            if over.is_set():
                status = "output-limit"
                break
            if time.monotonic() - start > wall_s:
                status = "timeout"
                break
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        cg.kill_and_remove()
        proc.wait()
        reader.join(timeout=5)
        wall = time.monotonic() - start
        if over.is_set():
            status = "output-limit"
        if status is not None:
            return JobOutcome(status, wall_s=wall)
        parsed, record, error = parse_records(b"".join(chunks), n_rows)
        if parsed == "crashed" and proc.returncode in (-signal.SIGKILL, 137):
            parsed = "timeout" if wall >= 0.8 * limits.cpu_s else "crashed"
        return JobOutcome(parsed, record, error, wall)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)
