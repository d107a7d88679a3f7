"""Disk quotas for trainees' homes: what the machine offers, said plainly at start.

A home is a folder of the state folder, bound into the trainee's sandbox. The kernel can cap a
folder's size only through filesystem quotas (project quotas on ext4 and XFS, mounted with
``prjquota``/``pquota``), which an operator has to switch on for the filesystem. This module
finds out whether the state folder's filesystem has them; where it does not, ``medai up`` says so,
and each trainee's single files are still capped by the sandbox's file-size limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_QUOTA_OPTIONS = {"prjquota", "pquota", "pqnoenforce", "prjjquota"}
USER_QUOTA_OPTIONS = {"usrquota", "uquota", "usrjquota", "quota"}


@dataclass(frozen=True)
class QuotaSupport:
    mount_point: str
    fstype: str
    options: frozenset[str]

    @property
    def project(self) -> bool:
        return bool(self.options & PROJECT_QUOTA_OPTIONS)

    def describe(self) -> str:
        if self.project:
            return (
                f"home quotas: {self.fstype} at {self.mount_point} has project quotas; set a "
                "limit per home with the filesystem's quota tools (setquota -P, xfs_quota)"
            )
        return (
            f"home quotas: NOT available ({self.fstype} at {self.mount_point} is mounted without "
            "project quotas), so one trainee can fill this disk; single files are capped by the "
            "sandbox's file-size limit. To cap homes, put the state folder on a filesystem "
            "mounted with prjquota (ext4) or pquota (XFS)."
        )


def _mounts() -> list[tuple[str, str, set[str]]]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        rfields = right.split()
        if len(fields) < 6 or len(rfields) < 3:
            continue
        mount_point = fields[4].replace("\\040", " ")
        opts = set(fields[5].split(",")) | set(rfields[2].split(","))
        out.append((mount_point, rfields[0], opts))
    return out


def probe(path: Path) -> QuotaSupport:
    """The quota support of the filesystem that holds ``path``."""
    target = os.path.realpath(path)
    best = ("/", "unknown", set())
    for mount_point, fstype, opts in _mounts():
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best[0]):
            best = (mount_point, fstype, opts)
    return QuotaSupport(best[0], best[1], frozenset(best[2]))
