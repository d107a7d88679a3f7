"""Property tests of the disclosure rules (no sandbox needed: records built in process) and the
audit log's hash chain."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medai.config import ReleasePolicy
from medai.sandbox import cohort
from medai.sandbox.audit import AuditLog, verify
from medai.sandbox.disclosure import Checker


def _private(n: int, seed: int) -> pd.DataFrame:
    return cohort.mock_cohort(seed, n)


def _record(df: pd.DataFrame, rows, by, value=None, stat="count") -> dict:
    sub = df.iloc[rows]
    cols = {"_row": [int(r) for r in rows]}
    for c in [*by, *([value] if value else [])]:
        cols[c] = sub[c].tolist()
    return {"request": {"kind": "table", "by": by, "value": value, "stat": stat}, "columns": cols}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(60, 400),
    seed=st.integers(0, 10**6),
    frac=st.floats(0.3, 1.0),
    min_cell=st.integers(3, 15),
    base=st.sampled_from([1, 3, 5, 10]),
    by=st.sampled_from([["region"], ["region", "sex"], ["smoking", "region"], ["sex", "smoking"]]),
)
def test_every_released_count_obeys_threshold_and_rounding(n, seed, frac, min_cell, base, by):
    df = _private(n, seed)
    rng = np.random.default_rng(seed)
    k = max(1, int(frac * n))
    rows = np.sort(rng.choice(n, k, replace=False)) if k < n else np.arange(n)
    policy = ReleasePolicy(min_cell=min_cell, rounding_base=base)
    dec = Checker(df, policy).check(_record(df, rows, by), "", [], 0)
    if dec.status != "released":
        assert dec.status in ("refused", "held") and dec.rule
        return
    true = df.iloc[rows].groupby(by).size()
    for cell in dec.output["cells"]:
        key = tuple(cell["group"])
        count = int(true.get(key if len(key) > 1 else key[0], 0))
        if cell["value"] is not None:
            assert count >= min_cell, (cell, count)
            assert cell["value"] % base == 0
            assert abs(cell["value"] - count) <= base / 2


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), drop=st.integers(1, 9))
def test_any_release_differing_by_fewer_than_min_cell_patients_is_refused(seed, drop):
    df = _private(300, seed)
    ck = Checker(df, ReleasePolicy(min_cell=10))
    first = ck.check(_record(df, np.arange(300 - 20), ["sex"], "sbp", "mean"), "", [], 0)
    assert first.status == "released"
    second = ck.check(
        _record(df, np.arange(300 - 20 - drop), ["sex"], "sbp", "mean"), "", first.subsets, 0
    )
    assert second.status == "refused" and second.rule in ("differencing", "threshold")


def test_a_dominated_cell_is_suppressed():
    df = _private(200, 1)
    d = df.copy()
    ck = Checker(d, ReleasePolicy(min_cell=5))
    # one patient's huge value dominates the sum of its group: the n-k rule suppresses it
    d.loc[0, "sbp"] = 10**7
    ck = Checker(d, ReleasePolicy(min_cell=5))
    dec = ck.check(_record(d, np.arange(200), ["region"], "sbp", "sum"), "", [], 0)
    cells = {tuple(c["group"]): c["value"] for c in dec.output["cells"]}
    assert cells[(d.loc[0, "region"],)] is None
    assert any(v is not None for v in cells.values())


def test_dp_budget_is_charged_and_enforced():
    df = _private(200, 2)
    ck = Checker(df, ReleasePolicy())
    rec = {"request": {"kind": "dp_count", "epsilon": 0.5}, "columns": {"_row": list(range(200))}}
    assert ck.check(rec, "", [], 0.5).epsilon == 0.5
    over = ck.check(rec, "", [], 0.4)
    assert over.status == "refused" and over.rule == "budget"


def test_audit_chain_detects_tampering_and_names_the_entry(tmp_path):
    log = AuditLog(tmp_path / "audit.log")
    for i in range(5):
        log.append("submit", user="bo", n=i)
    ok, msg = verify(log.path)
    assert ok and "5 entries" in msg
    lines = log.path.read_bytes().splitlines()
    entry = json.loads(lines[2])
    entry["user"] = "cy"
    lines[2] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    log.path.write_bytes(b"\n".join(lines) + b"\n")
    ok, msg = verify(log.path)
    assert not ok and "entry 3" in msg and ":4:" in msg  # the next entry no longer follows
    # deleting a line is caught too, and the command line says so with exit code 1
    del lines[1]
    log.path.write_bytes(b"\n".join(lines) + b"\n")
    r = subprocess.run(
        [sys.executable, "-m", "medai.cli", "sandbox", "verify-log", "--log", str(log.path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "entry 1" in r.stderr
