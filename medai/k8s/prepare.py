"""``python -m medai.k8s.prepare``: create the course's state tree on the state volume.

The grading Deployment's init container runs it (as the trainees' uid, so the drop folders it
creates are theirs to write; a folder the kubelet made for a subPath would be root's). The
folders are the embedded hub's (:meth:`medai.hub.layout.StateLayout.all_dirs`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medai.hub.layout import StateLayout


def prepare(root: Path, course: str, users: list[str]) -> list[Path]:
    """Create every folder the course's pods mount (idempotent); return them."""
    dirs = StateLayout(root).all_dirs(course, users)
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state", required=True, type=Path)
    ap.add_argument("--course", required=True)
    ap.add_argument("--users", default="", help="comma-separated course members")
    a = ap.parse_args(argv)
    users = [u for u in a.users.split(",") if u]
    made = prepare(a.state, a.course, users)
    print(f"medai.k8s.prepare: {len(made)} folders ready under {a.state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
