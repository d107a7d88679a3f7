"""One cgroup per sandbox: memory, process count and CPU, on cgroup v1 or v2.

A sandbox's processes join its cgroup before anything of theirs runs (see
:func:`join_argv`), so every descendant is counted: a fork bomb meets ``pids.max``, a memory hog
meets the memory limit (the kernel's OOM killer ends the largest process *of that sandbox*), and a
busy loop gets the CPU share it was given. Creating cgroups needs root or a delegated subtree; where
neither is possible :func:`probe` says so, and callers decide whether to refuse or to warn.

Why not ``RLIMIT_NPROC``: it counts processes per real user, and inside a user namespace created by
root every process is root outside, for which the kernel skips the check.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from medai.isolation.limits import Limits

ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000


def own_cgroups() -> dict[str, str]:
    """``{controller: path}`` of this process (``""`` is the v2 unified hierarchy)."""
    out: dict[str, str] = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, ctrls, path = line.split(":", 2)
            for c in ctrls.split(","):
                out[c] = path
    except OSError:
        pass
    return out


def is_v2() -> bool:
    return (ROOT / "cgroup.controllers").exists()


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError:
        return False


@dataclass
class Cgroup:
    """The cgroup(s) of one sandbox. ``enforced`` lists the limits actually in force."""

    name: str
    limits: Limits
    dirs: list[Path] = field(default_factory=list)
    enforced: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, name: str, limits: Limits) -> Cgroup:
        cg = cls(name, limits)
        own = own_cgroups()
        mem = str(limits.cgroup_memory_bytes())
        if is_v2():
            base = ROOT / own.get("", "/").lstrip("/")
            try:
                ctrls = (base / "cgroup.subtree_control").read_text().split()
            except OSError:
                ctrls = []
            d = cg._make(base / name)
            if d is not None:
                if "pids" in ctrls and _write(d / "pids.max", str(limits.processes)):
                    cg.enforced.add("processes")
                if "memory" in ctrls and _write(d / "memory.max", mem):
                    _write(d / "memory.swap.max", "0")
                    cg.enforced.add("memory")
                if limits.cpus and "cpu" in ctrls:
                    quota = int(limits.cpus * CFS_PERIOD_US)
                    if _write(d / "cpu.max", f"{quota} {CFS_PERIOD_US}"):
                        cg.enforced.add("cpu")
                if limits.cpu_weight and "cpu" in ctrls:
                    if _write(d / "cpu.weight", str(limits.cpu_weight)):
                        cg.enforced.add("cpu_weight")
            return cg
        wanted = [
            ("pids", "processes", [("pids.max", str(limits.processes))]),
            ("memory", "memory", [("memory.limit_in_bytes", mem), ("memory.swappiness", "0")]),
        ]
        if limits.cpus:
            quota = str(int(limits.cpus * CFS_PERIOD_US))
            wanted.append(
                (
                    "cpu",
                    "cpu",
                    [("cpu.cfs_period_us", str(CFS_PERIOD_US)), ("cpu.cfs_quota_us", quota)],
                )
            )
        if limits.cpu_weight:
            wanted.append(("cpu", "cpu_weight", [("cpu.shares", str(v1_shares(limits)))]))
        for ctrl, what, settings in wanted:
            base = ROOT / ctrl / own.get(ctrl, "/").lstrip("/")
            d = cg._make(base / name)
            if d is None:
                continue
            (first, value), *rest = settings
            if _write(d / first, value):
                cg.enforced.add(what)
                for fname, v in rest:
                    _write(d / fname, v)
        return cg

    @classmethod
    def find(cls, name: str) -> Cgroup | None:
        """The cgroup(s) :meth:`create` made under ``name`` from a process in the same cgroup
        as this one (the hub's services and the launchers it starts), if they exist."""
        own = own_cgroups()
        if is_v2():
            candidates = [ROOT / own.get("", "/").lstrip("/") / name]
        else:
            candidates = [
                ROOT / ctrl / own.get(ctrl, "/").lstrip("/") / name
                for ctrl in ("pids", "memory", "cpu")
            ]
        dirs = [d for d in candidates if d.is_dir()]
        return cls(name, Limits(), dirs=dirs) if dirs else None

    def set_cpu_weight(self, weight: int | None) -> bool:
        """Change the CPU weight of a running sandbox (None: the kernel's default, 100);
        True where a cpu controller took it."""
        done = False
        for d in self.dirs:
            if (d / "cpu.weight").exists():
                done |= _write(d / "cpu.weight", str(weight or 100))
            elif (d / "cpu.shares").exists():
                done |= _write(d / "cpu.shares", str(v1_shares(Limits(cpu_weight=weight))))
        return done

    def memory_bytes(self) -> dict[str, int]:
        """What the sandbox holds now: ``usage`` (the cgroup's whole charge, page cache of the
        files it read included) and ``resident`` (anonymous memory and tmpfs pages: what
        cannot be reclaimed while it runs). Empty where there is no memory cgroup."""
        for d in self.dirs:
            for usage_file in ("memory.current", "memory.usage_in_bytes"):
                try:
                    usage = int((d / usage_file).read_text())
                    stat = dict(
                        line.split() for line in (d / "memory.stat").read_text().splitlines()
                    )
                except (OSError, ValueError):
                    continue
                if usage_file == "memory.current":  # v2
                    resident = int(stat.get("anon", 0)) + int(stat.get("shmem", 0))
                else:  # v1 (the total_ fields include sub-cgroups)
                    resident = int(stat.get("total_rss", stat.get("rss", 0))) + int(
                        stat.get("total_shmem", stat.get("shmem", 0))
                    )
                return {"usage": usage, "resident": resident}
        return {}

    def _make(self, d: Path) -> Path | None:
        if d in self.dirs:  # v1: one cpu folder for both the quota and the weight
            return d
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        self.dirs.append(d)
        return d

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def pids(self) -> list[int]:
        out: set[int] = set()
        for d in self.dirs:
            try:
                out |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            except OSError:
                continue
        return sorted(out)

    def memory_peak_bytes(self) -> int | None:
        for d in self.dirs:
            for fname in ("memory.peak", "memory.max_usage_in_bytes"):
                try:
                    return int((d / fname).read_text())
                except (OSError, ValueError):
                    continue
        return None

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer ended in this cgroup."""
        for d in self.dirs:
            for fname in ("memory.events", "memory.oom_control"):
                try:
                    for line in (d / fname).read_text().splitlines():
                        k, _, v = line.partition(" ")
                        if k == "oom_kill":
                            return int(v)
                except (OSError, ValueError):
                    continue
        return 0

    def kill_and_remove(self) -> None:
        """SIGKILL every process left in the cgroup(s), then remove them."""
        self.kill_all()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup(s) (and wait until they are gone)."""
        for _ in range(100):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)


def v1_shares(limits: Limits) -> int:
    """cgroup v1 ``cpu.shares`` for a v2-style ``cpu_weight`` (default 100 -> 1024)."""
    return max(2, (limits.cpu_weight or 100) * 1024 // 100)


def join_argv(cg: Cgroup) -> list[str]:
    """A ``/bin/sh`` prefix that moves itself into ``cg`` and then execs the rest of the argv."""
    if not cg.dirs:
        return []
    script = 'while [ "$1" != -- ]; do echo $$ > "$1"; shift; done; shift; exec "$@"'
    return ["/bin/sh", "-c", script, "sh", *cg.procs_files(), "--"]


@dataclass(frozen=True)
class Probe:
    """What this machine lets a sandbox's limits rest on."""

    enforced: frozenset[str]
    version: str

    @property
    def complete(self) -> bool:
        return {"memory", "processes", "cpu"} <= self.enforced

    def describe(self) -> str:
        have = ", ".join(sorted(self.enforced)) or "none"
        missing = sorted({"memory", "processes", "cpu"} - self.enforced)
        text = f"cgroup {self.version}: enforced {have}"
        if missing:
            text += (
                f"; NOT enforced: {', '.join(missing)} (run as root, or give this user a delegated "
                "cgroup, e.g. `systemd-run --user --scope -p Delegate=yes medai up ...`)"
            )
        return text


def probe() -> Probe:
    """Try to make a cgroup with every limit and report which ones took."""
    cg = Cgroup.create(f"medai-probe-{uuid.uuid4().hex[:8]}", Limits(cpus=1.0))
    try:
        return Probe(frozenset(cg.enforced), "v2" if is_v2() else "v1")
    finally:
        cg.kill_and_remove()
