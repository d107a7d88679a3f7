"""Grading throughput: `medai grade` (sandboxed, parallel) vs plain `nbgrader autograde`.

Builds one throwaway course with the pilot lab and 40 submissions (honest ones, some with a
wrong eGFR function, some with a weaker model), then, on this machine in one run:

1. ``nbgrader autograde pilot`` — nbgrader's own executor, one submission after another, hidden
   tests in the student's kernel (here: the lab's public checks, since our labs hold no
   executable hidden tests);
2. ``medai grade pilot --workers N`` — one bubblewrap sandbox per submission, N in parallel,
   including the one reference run of the solution.

Prints the throughput of each, the ratio, medai's per-submission overhead beyond the notebook's
own execution time, and where a submission's time goes, step by step (the ``timings`` every
result file keeps: intake, sandbox start, interpreter and imports, cells, scoring, feedback,
gradebook writes).
``--scoring`` instead times the trusted scorer of ``model`` tasks alone: validating recorded
predictions and computing each metric of medai/autograder/metrics.py on hidden-split-sized data.
Usage: ``python bench/bench_grading.py [--n 40] [--workers 2] [--scoring]``. Prints figures,
asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent

# the steps of one submission, as GradeResult.timings names them
STEP_NOTES = {
    "intake": "fingerprint, timestamp, load and sanitize the notebooks",
    "sandbox": "job folder, sandbox run, record parsing",
    "sandbox.sandbox_start": "cgroups, bubblewrap, Python start-up to the runner's first line",
    "sandbox.imports": "job files copied in; IPython, medai.autograder.lab (numpy, pydantic)",
    "sandbox.cells": "the notebook's own cells",
    "sandbox.sandbox_rest": "IPython shell, exit, reading the pipes, cgroup clean-up",
    "score": "trusted scoring of every task",
    "feedback": "autograded notebooks and the cell log",
    "notebooks_out": "writing the autograded notebooks",
    "gradebook": "nbgrader gradebook writes",
    "log": "the log file",
}
TIMED_STEPS = list(STEP_NOTES)


def _variant(nb: nbformat.NotebookNode, k: int) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid == "egfr_answer" and k % 4 == 1:
            cell.source = cell.source.replace("-1.200", "-1.0")  # a wrong exponent
        if gid == "ckd_model_answer" and k % 4 == 2:
            cell.source = cell.source.replace("make_pipeline(", "make_pipeline(") + (
                "\nfrom sklearn.compose import make_column_selector, make_column_transformer\n"
                "model = make_pipeline(make_column_transformer(('passthrough', ['age']), remainder='drop'),"
                " LogisticRegression(max_iter=MAX_ITER))"
            )
    return nb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="submissions")
    ap.add_argument("--workers", type=int, default=2, help="medai grade workers")
    ap.add_argument("--scoring", action="store_true", help="time the model-task scorer only")
    args = ap.parse_args()
    if args.scoring:
        bench_scoring()
        return

    from medai.synthetic.core import generate
    from medai.testing.course import lab_data_key, make_course, solved, submit

    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        generate("ehr", data, n=4000, seed=0, secret=lab_data_key())  # keyed, as on a hub
        course = make_course(tmp / "course", REPO / "labs" / "pilot", "pilot")
        release = nbformat.read(course / "release/pilot/pilot.ipynb", as_version=4)
        source = nbformat.read(course / "source/pilot/pilot.ipynb", as_version=4)
        honest = solved(release, source)
        for k in range(args.n):
            submit(course, "pilot", f"s{k:03d}", {"pilot.ipynb": _variant(honest, k)})
        print(
            f"{args.n} submissions of the pilot lab; {os.cpu_count()} CPUs; load {os.getloadavg()}"
        )

        # 1. plain nbgrader: its executor, sequential; data for the kernel via MEDAI_DATA
        t0 = time.monotonic()
        nbg = subprocess.run(
            [str(bindir / "nbgrader"), "autograde", "pilot", "--create", "--force"],
            cwd=course,
            env={**env, "MEDAI_DATA": str(data / "public")},
            capture_output=True,
            text=True,
        )
        t_nbg = time.monotonic() - t0
        if nbg.returncode != 0:
            print(nbg.stderr[-3000:])
            raise SystemExit("nbgrader autograde failed")

        # 2. medai grade: sandboxed, parallel (reference run included)
        t0 = time.monotonic()
        med = subprocess.run(
            [
                str(bindir / "medai"),
                "grade",
                "pilot",
                "--course",
                str(course),
                "--data",
                str(data),
                "--workers",
                str(args.workers),
                "--force",
                "--quiet",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        t_med = time.monotonic() - t0
        if med.returncode != 0:
            print(med.stdout[-3000:], med.stderr[-3000:])
            raise SystemExit("medai grade failed")

        results = [
            json.loads(p.read_text()) for p in (course / "grading/pilot/results").glob("*.json")
        ]
        exec_s = [r["sandbox"]["exec_s"] for r in results]
        store = ("notebooks_out", "gradebook", "log")
        per_sub = [r["seconds"] + sum(r["timings"].get(k, 0.0) for k in store) for r in results]
        overhead = [s - e for s, e in zip(per_sub, exec_s, strict=True)]
        scores = sorted({r["auto_score"] for r in results})
        n = len(results)
        print(f"\nmedai grade ({args.workers} workers, bubblewrap sandbox per submission)")
        print(f"  wall {t_med:.1f} s -> {60 * n / t_med:.1f} submissions/min; scores seen {scores}")
        print(f"  notebook execution per submission: median {statistics.median(exec_s):.2f} s")
        print(
            f"  overhead per submission beyond execution: median {statistics.median(overhead):.2f} s, "
            f"max {max(overhead):.2f} s"
        )
        print("  where a submission's time goes (median s; sandbox.* are parts of sandbox):")
        for step in TIMED_STEPS:
            values = [r["timings"].get(step, 0.0) for r in results]
            print(f"    {step:<24} {statistics.median(values):6.3f}   {STEP_NOTES[step]}")
        print("nbgrader autograde (sequential, student kernel)")
        print(f"  wall {t_nbg:.1f} s -> {60 * args.n / t_nbg:.1f} submissions/min")
        print(
            f"  per submission {t_nbg / args.n:.2f} s, of which beyond the notebook's execution "
            f"~{t_nbg / args.n - statistics.median(exec_s):.2f} s"
        )
        print(f"\nthroughput ratio medai / nbgrader: {t_nbg / t_med:.2f}x")


def bench_scoring(repeats: int = 3) -> None:
    """Seconds to validate and score one submission's predictions, per metric (best of 3)."""
    import numpy as np

    from medai.autograder.scoring import ModelTruth, score_model
    from medai.autograder.tasks import parse_tasks

    rng = np.random.default_rng(0)
    n, k, masks = 10_000, 7, (200, 128, 128)
    y_bin = rng.integers(0, 2, n)
    p_bin = np.clip(0.3 * y_bin + rng.uniform(0, 0.7, n), 0, 1)
    y_k = rng.integers(0, k, n)
    p_k = rng.dirichlet(np.ones(k), n)
    surv = np.stack([rng.exponential(1000, n), rng.integers(0, 2, n)], axis=1)
    m_true = rng.uniform(size=masks) < 0.02
    m_pred = m_true ^ (rng.uniform(size=masks) < 0.01)
    notes = [[{"start": i, "end": i + 5, "label": "NAME"} for i in range(0, 400, 40)]] * 2000
    cases = {
        "auroc": ({"type": "proba", "classes": 2}, y_bin, np.stack([1 - p_bin, p_bin], 1)),
        "ece": ({"type": "proba", "classes": 2}, y_bin, np.stack([1 - p_bin, p_bin], 1)),
        "brier": ({"type": "proba", "classes": 2}, y_bin, np.stack([1 - p_bin, p_bin], 1)),
        "macro_auroc": ({"type": "proba", "classes": k}, y_k, p_k),
        "balanced_accuracy": ({"type": "proba", "classes": k}, y_k, p_k),
        "accuracy": ({"type": "proba", "classes": k}, y_k, p_k),
        "c_index": ({"type": "risk"}, surv, rng.normal(size=n)),
        "mae": ({"type": "score"}, rng.normal(size=n), rng.normal(size=n)),
        "dice": ({"type": "mask"}, m_true, m_pred),
        "lesion_sensitivity": ({"type": "mask"}, m_true, m_pred),
        "span_recall": ({"type": "spans"}, notes, notes),
        "span_precision": ({"type": "spans"}, notes, notes),
    }
    print(f"trusted scorer, one submission (best of {repeats}):")
    for name, (output, labels, pred) in cases.items():
        src = {"npz": "x.npz", "key": "x"}
        task = parse_tasks(
            {
                "lab": "bench",
                "tasks": {
                    "t": {
                        "kind": "model",
                        "dataset": "d",
                        "dev": {"inputs": src, "labels": src},
                        "test": {"inputs": src, "labels": {**src, "hidden": True}},
                        "output": output,
                        "metrics": [{"name": name, "full_marks_at": 1, "zero_marks_at": 0}],
                    }
                },
            }
        ).tasks["t"]
        truth = ModelTruth(labels, len(labels))
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            score_model(task, pred, truth)
            best = min(best, time.perf_counter() - t)
        size = (
            f"{len(labels)} cases"
            if name not in ("dice", "lesion_sensitivity")
            else (f"{masks[0]} masks of {masks[1]}x{masks[2]}")
        )
        print(f"  {name:<20} {best * 1000:8.1f} ms  ({size})")


if __name__ == "__main__":
    main()
