"""Data-sandbox latency and throughput, with the unsandboxed analysis side by side.

On this machine, with the sandbox's own service logic (:class:`medai.sandbox.service.Sandbox`:
real bubblewrap data jobs, ACRO/OpenDP/SACRO-ML checks, audit log, store; the hub's HTTP and
token check in front of it add a few milliseconds and are left out):

1. submit-to-result latency (median, p95) of a small aggregate job (a mean per region and sex),
   as a trainee sees it (the result becomes visible at a whole multiple of the timing quantum);
2. the same for a model release (logistic regression refit plus the membership-inference
   attack);
3. jobs per minute with 20 trainees submitting one job each at once;
4. the same aggregate computed unsandboxed (pandas in this process, no checks) for comparison.

For reference: human output checking in trusted research environments such as OpenSAFELY
takes days; the goal here is a cleared aggregate job back in under 2 s median.

Usage: ``python bench/bench_sandbox.py [--n 2000] [--repeat 15] [--workers 2] [--quantum 0.5]``.
Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from medai.config import parse_config  # noqa: E402
from medai.sandbox.service import Sandbox  # noqa: E402

PRELUDE = "from medai.sandbox import outputs as out\n"
AGGREGATE = PRELUDE + (
    "def f(df):\n    return out.table(df, by=['region', 'sex'], value='sbp', stat='mean')\n"
)
MODEL = PRELUDE + (
    "from sklearn.linear_model import LogisticRegression\n"
    "def f(df):\n"
    "    tr = df.sample(frac=0.7, random_state=0)\n"
    "    m = LogisticRegression(max_iter=2000).fit(tr[['age', 'sbp', 'bmi']], tr.stroke_5y)\n"
    "    return out.model(tr, y='stroke_5y', x=['age', 'sbp', 'bmi'], coef=m.coef_[0],\n"
    "                     intercept=m.intercept_[0])\n"
)


def _wait(sb: Sandbox, user: str, job: str) -> dict:
    while True:
        v = sb.job_view(user, job)
        if v["status"] != "running":
            return v
        time.sleep(0.01)


def _timed(sb: Sandbox, user: str, code: str) -> tuple[float, str]:
    t0 = time.monotonic()
    job = sb.submit(user, "cohort", code, "f")["job"]
    v = _wait(sb, user, job)
    return time.monotonic() - t0, v["status"]


def _stats(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
    return f"median {statistics.median(xs):.2f} s, p95 {p95:.2f} s (n={len(xs)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="patients in the private cohort")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--workers", type=int, default=2, help="jobs in parallel")
    ap.add_argument("--quantum", type=float, default=0.5, help="timing quantum, seconds")
    ap.add_argument("--trainees", type=int, default=20)
    a = ap.parse_args()
    users = [f"t{i:02d}" for i in range(a.trainees)]
    cfg = parse_config(
        {
            "course": {"id": "bench", "title": "Bench"},
            "people": {"instructors": ["owner"], "trainees": users},
            "sandbox": {
                "timing_quantum_s": a.quantum,
                "datasets": [
                    {
                        "name": "cohort",
                        "title": "Cohort",
                        "owner": "owner",
                        "n": a.n,
                        "policy": {"max_jobs_per_hour": 1000},
                    }
                ],
            },
        }
    )
    with tempfile.TemporaryDirectory(prefix="medai-bench-sandbox-") as state:
        sb = Sandbox(cfg, Path(state), workers=a.workers)
        for u in users:
            sb.request_access(u, "cohort", "benchmark of the data sandbox")
            sb.decide_access("owner", u, "cohort", "grant")
        time.sleep(5)  # let the service's warm-up imports finish, as they do in a running hub
        _timed(sb, users[0], AGGREGATE)  # first job: page cache
        agg = [_timed(sb, users[0], AGGREGATE) for _ in range(a.repeat)]
        model = [_timed(sb, users[1], MODEL) for _ in range(max(3, a.repeat // 3))]
        t0 = time.monotonic()
        with ThreadPoolExecutor(len(users)) as ex:
            burst = list(ex.map(lambda u: _timed(sb, u, AGGREGATE), users))
        wall = time.monotonic() - t0
        sb.pool.shutdown(wait=True)
        import pandas as pd

        private = pd.read_parquet(sb.layout.private_file("cohort"))
        plain = []
        for _ in range(a.repeat):
            t = time.perf_counter()
            private.groupby(["region", "sex"])["sbp"].mean()
            plain.append(time.perf_counter() - t)
    print(f"private cohort: {a.n} patients; workers {a.workers}; timing quantum {a.quantum} s")
    print(
        f"aggregate job, submit to result:  {_stats([t for t, _ in agg])}; "
        f"statuses {sorted({s for _, s in agg})}"
    )
    print(
        f"model release (refit + MIA):      {_stats([t for t, _ in model])}; "
        f"statuses {sorted({s for _, s in model})}"
    )
    print(
        f"{len(users)} trainees at once:             {len(users) / wall * 60:.1f} jobs/min "
        f"(all back in {wall:.1f} s; per job {_stats([t for t, _ in burst])})"
    )
    print(
        f"same aggregate unsandboxed:       median {statistics.median(plain) * 1000:.2f} ms "
        "(pandas in-process, no isolation, no disclosure checks)"
    )
    print("human output checking (OpenSAFELY and other TREs): days")


if __name__ == "__main__":
    main()
