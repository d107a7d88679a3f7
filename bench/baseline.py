"""Run an earlier commit's own benchmark in the same run, for a side-by-side comparison.

``run_baseline("09f0b45", ["--only", "medai", "--repeat", "5"])`` checks the commit out into a
temporary git worktree (next to this checkout's ``node_modules``), runs *its*
``bench/bench_hub.py`` with *its* code on this machine, now, and returns what it printed. The
figures of both versions then come from one run on one machine, never from an old log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_baseline(rev: str, args: list[str], timeout: float = 3600) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="medai-baseline-"))
    tree = tmp / "tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev],
        check=True,
        capture_output=True,
        text=True,
    )
    try:
        if (REPO / "node_modules").exists():
            (tree / "node_modules").symlink_to(REPO / "node_modules")
        env = dict(os.environ, PYTHONPATH=str(tree))
        res = subprocess.run(
            [sys.executable, str(tree / "bench" / "bench_hub.py"), *args],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        out = res.stdout + (
            f"\n(baseline exited {res.returncode}: {res.stderr[-1500:]})" if res.returncode else ""
        )
        return out
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
            capture_output=True,
        )
