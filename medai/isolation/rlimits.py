"""What every job sandbox shares beyond its cgroup: per-process rlimits, and a bounded pipe.

- :func:`prlimit_argv`: util-linux ``prlimit`` in front of a job's command, setting the
  per-process limits of a :class:`~medai.isolation.limits.Limits` (CPU seconds, address space,
  file size, open files, no core dumps; the process count only where no pids cgroup holds it).
  The grading job, the data job and the Kubernetes grading pod all start this way.
- :func:`read_capped`: drain a sandbox's result pipe keeping at most ``cap`` bytes, so a job
  that writes without end cannot fill the trusted side's memory; the caller sees ``over`` set
  and ends the job.
"""

from __future__ import annotations

import threading

from medai.isolation.limits import Limits

BLOCK = 65536


def prlimit_argv(limits: Limits, *, nproc: bool = False) -> list[str]:
    """``prlimit --cpu=... --as=... ... --`` for ``limits`` (``nproc``: add RLIMIT_NPROC)."""
    args = ["prlimit"]
    if limits.cpu_s is not None:
        args.append(f"--cpu={limits.cpu_s}")
    args += [
        f"--as={limits.memory_mb << 20}",
        f"--fsize={limits.file_size_mb << 20}",
        f"--nofile={limits.open_files}",
        "--core=0",
    ]
    if nproc:
        args.append(f"--nproc={limits.processes}")
    return [*args, "--"]


def read_block(stream) -> bytes:
    """One block of what is there now (``read1`` where the stream has it)."""
    return stream.read1(BLOCK) if hasattr(stream, "read1") else stream.read(BLOCK)


def read_capped(stream, cap: int, sink: list[bytes], over: threading.Event) -> None:
    """Drain ``stream`` into ``sink`` keeping at most ``cap`` bytes; set ``over`` when more
    arrives (the rest is read and dropped, so the writer never blocks on a full pipe)."""
    size = 0
    while True:
        block = read_block(stream)
        if not block:
            break
        if size < cap:
            sink.append(block[: cap - size])
        size += len(block)
        if size > cap:
            over.set()
    stream.close()
