"""Benchmark the synthetic data generators: rows per second and peak memory.

Each run is a fresh child process that generates one dataset into a temporary folder (deleted
afterwards) and reports its wall time, the rows it wrote and its own peak resident memory
(``getrusage(RUSAGE_SELF).ru_maxrss``). Figures printed:

1. the EHR cohort at 10^4 ... 10^7 patients (``--sizes`` to change);
2. every other available generator at its default size;
3. side by side, at ``--naive-n`` patients, what a user would otherwise write: a per-patient
   Python loop building rows in lists and one ``pandas.DataFrame.to_csv`` at the end, against
   the chunked, vectorised generator on the same number of patients.

    .venv/bin/python bench/bench_synthetic.py                     # everything (10^7 takes minutes)
    .venv/bin/python bench/bench_synthetic.py --sizes 1e4,1e5 --naive-n 20000
    .venv/bin/python bench/bench_synthetic.py --sizes 1e4,1e5 --naive-n 0 --keyed  # as `medai up`
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(name: str, n: int | None, fmt: str | None, out: str, naive: bool, keyed: bool) -> None:
    """Runs inside the child process; prints one JSON line."""
    import resource

    from medai.synthetic import _tables

    rows = {"n": 0}
    if naive:
        t0 = time.perf_counter()
        n = n or 10_000
        rows["n"] = _naive_ehr(n, Path(out))
    else:
        from medai.synthetic.core import generate, get_spec

        original = _tables.TableWriter.write

        def counting_write(self, columns):
            original(self, columns)
            rows["n"] += len(next(iter(columns.values())))

        _tables.TableWriter.write = counting_write
        n = n or get_spec(name).default_n
        # keyed: as `medai up` does, the test items are drawn again from the key's streams
        secret = hashlib.sha256(b"medai bench data key").digest() if keyed else None
        t0 = time.perf_counter()
        generate(name, out, n=n, seed=1, fmt=fmt, secret=secret)
    wall = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(
        json.dumps({"n": n, "wall_s": wall, "rows": rows["n"], "bytes": size, "peak_mib": peak_mib})
    )


def _naive_ehr(n: int, out: Path) -> int:
    """The obvious way: loop over patients, append dicts, build DataFrames, write CSV once.

    Same tables and roughly the same content as the ``ehr`` generator (patients, encounters,
    observations), so the comparison is about the method, not the workload.
    """
    import random

    import pandas as pd

    rnd = random.Random(1)
    patients, encounters, observations = [], [], []
    items = [("sbp", "mm[Hg]"), ("dbp", "mm[Hg]"), ("heart_rate", "/min"), ("weight", "kg")]
    labs = [("creatinine", "umol/L"), ("egfr", "mL/min/{1.73_m2}"), ("hba1c", "%")]
    e = 0
    for i in range(n):
        pid = f"P{i:012x}"
        age = min(max(rnd.gauss(60, 11), 35), 90)
        region = rnd.choices(["urban", "rural", "under_resourced"], [0.6, 0.25, 0.15])[0]
        patients.append(
            {
                "patient_id": pid,
                "sex": rnd.choice("FM"),
                "birth_year": 2020 - int(age),
                "region": region,
                "index_date": "2020-06-01",
                "smoking_status": rnd.choice(["never", "former", "current", None]),
                "split": "test" if rnd.random() < 0.3 else "train",
            }
        )
        for _ in range(1 + _poisson(rnd, 3.0)):
            eid = f"E{e:012x}"
            e += 1
            day = f"2019-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
            encounters.append(
                {"encounter_id": eid, "patient_id": pid, "date": day, "type": "outpatient"}
            )
            for item, unit in items + (labs if rnd.random() < 0.4 else []):
                if rnd.random() < 0.85:
                    observations.append(
                        {
                            "patient_id": pid,
                            "encounter_id": eid,
                            "date": day,
                            "item": item,
                            "value": round(rnd.gauss(100, 20), 1),
                            "unit": unit,
                        }
                    )
    for name, rows in (
        ("patients", patients),
        ("encounters", encounters),
        ("observations", observations),
    ):
        pd.DataFrame(rows).to_csv(out / f"{name}.csv", index=False)
    return len(patients) + len(encounters) + len(observations)


def _poisson(rnd, lam: float) -> int:
    import math

    k, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rnd.random()
        if p <= limit:
            return k
        k += 1


def run(
    name: str, n: int | None, fmt: str | None = None, naive: bool = False, keyed: bool = False
) -> dict:
    """Generate in a child process; return its figures."""
    out = tempfile.mkdtemp(prefix=f"bench-{name}-")
    try:
        cmd = [sys.executable, __file__, "--child", name, "--out", out]
        if n:
            cmd += ["--n", str(n)]
        if fmt:
            cmd += ["--format", fmt]
        if naive:
            cmd += ["--naive"]
        if keyed:
            cmd += ["--keyed"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: child run {name} n={n} failed:\n{proc.stderr[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _row(label: str, r: dict) -> str:
    wall = max(r["wall_s"], 1e-9)
    rows = f"{r['rows']:>13,}" if r["rows"] else f"{'-':>13}"
    rate = f"{r['rows'] / wall:>12,.0f}" if r["rows"] else f"{'-':>12}"
    return (
        f"{label:<28} {r['n']:>12,} {r['n'] / wall:>10,.0f} {rows} {rate} {r['wall_s']:>8.1f} "
        f"{r['peak_mib']:>9.0f} {r['bytes'] / 2**20:>9.0f}"
    )


HEADER = (
    f"{'run':<28} {'n':>12} {'n/s':>10} {'rows written':>13} {'rows/s':>12} {'wall s':>8} "
    f"{'peak MiB':>9} {'disk MiB':>9}"
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1e4,1e5,1e6,1e7", help="EHR sizes, comma separated")
    ap.add_argument("--format", default="csv", choices=["csv", "parquet"])
    ap.add_argument(
        "--naive-n", type=float, default=1e5, help="patients for the naive comparison (0: skip)"
    )
    ap.add_argument("--skip-others", action="store_true", help="only the EHR cohort")
    ap.add_argument(
        "--keyed", action="store_true", help="generate with a data key, as `medai up` does"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--naive", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        fmt = (
            None
            if args.child not in ("ehr", "multisite", "survival", "label_scarce")
            else args.format
        )
        _child(args.child, args.n, fmt, args.out, args.naive, args.keyed)
        return

    from medai.synthetic.core import available

    sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    print(f"synthetic data generation — {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print("n: units of the dataset (patients, images, ...); rows: table rows written, all tables")
    print(HEADER)
    for n in sizes:
        label = f"ehr ({args.format}, chunked{', keyed' if args.keyed else ''})"
        print(_row(label, run("ehr", n, args.format, keyed=args.keyed)), flush=True)
    if not args.skip_others:
        for name in available():
            if name != "ehr":
                label = f"{name} (default n{', keyed' if args.keyed else ''})"
                print(_row(label, run(name, None, args.format, keyed=args.keyed)), flush=True)
    if args.naive_n:
        n = int(args.naive_n)
        print(f"\nside by side at {n:,} patients (CSV)")
        print(HEADER)
        print(_row("ehr chunked+vectorised", run("ehr", n, "csv")), flush=True)
        print(_row("naive loop + pandas.to_csv", run("ehr", n, naive=True)), flush=True)


if __name__ == "__main__":
    main()
