"""Resource limits of a sandbox, as plain data.

One object for every sandbox kind (trainee server, formgrader, grading job, data job). The local
launcher enforces them with cgroups, rlimits and sized tmpfs mounts (:mod:`medai.isolation.cgroups`,
:mod:`medai.isolation.bwrap`); the Kubernetes chart renders the same numbers into pod resources
(:meth:`Limits.k8s_resources`). ``None`` means "not limited by this field".
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 3072  # the whole sandbox (processes and its tmpfs pages), memory cgroup
    processes: int = 64  # pids cgroup (RLIMIT_NPROC only where no cgroup can be made)
    cpus: float | None = None  # CPU cores (cfs quota); None: share the machine fairly
    # CPU weight against the sandbox's siblings and the hub (cgroup v2 cpu.weight, 1-10000;
    # 100 is the kernel's default; v1: cpu.shares = weight * 1024 / 100). None: the default.
    cpu_weight: int | None = None
    cpu_s: int | None = 120  # CPU seconds per process (RLIMIT_CPU); None for servers
    wall_s: float | None = 120.0  # wall clock of a job; None for long-running servers
    file_size_mb: int = 64  # largest file one process may write (RLIMIT_FSIZE)
    open_files: int = 256  # RLIMIT_NOFILE
    scratch_mb: int = 256  # the job's writable /scratch (grading and data jobs)
    tmp_mb: int = 64  # private /tmp
    shm_mb: int = 64  # private /dev/shm
    log_kb: int = 256  # a job's captured stdout/stderr
    result_mb: int = 64  # a job's result channel

    @classmethod
    def server(
        cls,
        *,
        memory_mb: int,
        cpus: float | None,
        processes: int = 512,
        cpu_weight: int | None = None,
    ) -> Limits:
        """Limits of a long-running Jupyter server (a trainee's or the formgrader)."""
        return cls(
            memory_mb=memory_mb,
            processes=processes,
            cpus=cpus,
            cpu_weight=cpu_weight,
            cpu_s=None,
            wall_s=None,
            file_size_mb=4096,
            open_files=4096,
            scratch_mb=0,
            tmp_mb=min(1024, max(64, memory_mb // 4)),
            shm_mb=min(1024, max(64, memory_mb // 4)),
        )

    def with_(self, **changes) -> Limits:
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Limits:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown limit(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def cgroup_memory_bytes(self) -> int:
        """The memory cgroup's limit: processes plus the tmpfs pages they may fill."""
        return (self.memory_mb + self.scratch_mb + self.tmp_mb + self.shm_mb) * 1024 * 1024

    def k8s_resources(self) -> dict:
        """The same limits as a Kubernetes container ``resources`` block."""
        lim: dict[str, str] = {"memory": f"{self.memory_mb}Mi"}
        if self.cpus is not None:
            lim["cpu"] = f"{int(self.cpus * 1000)}m"
        return {"limits": lim, "requests": dict(lim)}


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*$", re.IGNORECASE)
_UNIT = {"": 1 / 2**20, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}


def parse_mb(size: str | int) -> int:
    """``"4G"`` -> 4096 (MiB); JupyterHub's ``mem_limit`` spelling (K, M, G, T; ``Gi`` too)."""
    if isinstance(size, int):
        return max(1, size // 2**20)
    m = _SIZE.match(str(size))
    if not m:
        raise ValueError(f"not a memory size: {size!r} (write e.g. 512M or 4G)")
    unit = (m.group(2) or "").upper().rstrip("I")
    return max(1, int(float(m.group(1)) * _UNIT[unit]))
