"""``multisite``: one chronic-disease cohort spread over hospitals of very different sizes.

Eight hospitals share the planted CKD model of :mod:`medai.synthetic._cohort` but differ in size
(40 % down to 2 % of patients), case mix (age, region, diabetes and hypertension prevalence)
and measurement devices (a per-site offset of the blood-pressure monitor, a per-site calibration
factor of the creatinine assay, which shifts the reported eGFR, and a per-site HbA1c offset).

Public (``<root>/public/multisite/``): ``sites`` (name, kind, number of training and test
patients), ``site_<X>`` (one table of training patients per hospital, features + ``ckd_5y``) and
``test_features`` (test patients of every hospital, with their ``site``). Hidden: ``test_labels``
and ``sites_truth.json`` (case mix and device bias of each hospital, the planted coefficients).
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pyarrow as pa

from medai.synthetic import _cohort as co
from medai.synthetic._tables import (
    TABULAR_FORMATS,
    TableWriter,
    chunks,
    floats,
    ints,
    pseudonyms,
    write_table,
)
from medai.synthetic.core import DatasetSpec, GenContext

CHUNK = 50_000
TEST_FRACTION = 0.3


# name, kind, share of patients, case mix, device bias (sbp mmHg, creatinine factor, HbA1c %)
SITES: tuple[tuple[str, str, float, co.CaseMix, tuple[float, float, float]], ...] = (
    ("A", "university hospital", 0.40, co.CaseMix(62, 12, (0.9, 0.08, 0.02)), (0.0, 1.00, 0.0)),
    ("B", "city general", 0.22, co.CaseMix(58, 11, (0.8, 0.15, 0.05), 0.5), (3.0, 1.04, 0.1)),
    (
        "C",
        "regional hospital",
        0.14,
        co.CaseMix(63, 10, (0.3, 0.6, 0.1), 0.8, 0.2),
        (-4.0, 0.95, -0.1),
    ),
    (
        "D",
        "diabetes centre",
        0.09,
        co.CaseMix(57, 10, (0.7, 0.2, 0.1), 1.5, 1.3, 0.2),
        (2.0, 1.02, 0.3),
    ),
    (
        "E",
        "district hospital",
        0.06,
        co.CaseMix(66, 11, (0.1, 0.7, 0.2), 0.3, 0.1, 0.3),
        (6.0, 1.08, 0.0),
    ),
    (
        "F",
        "community clinic",
        0.04,
        co.CaseMix(55, 12, (0.2, 0.3, 0.5), 1.0, 0.4),
        (-6.0, 0.92, 0.2),
    ),
    (
        "G",
        "mission hospital",
        0.03,
        co.CaseMix(52, 13, (0.05, 0.35, 0.6), 0.6, 0.3, 0.4),
        (5.0, 1.10, -0.2),
    ),
    (
        "H",
        "rural health centre",
        0.02,
        co.CaseMix(59, 12, (0.0, 0.5, 0.5), 0.2, 0.2, 0.3),
        (-8.0, 0.90, 0.3),
    ),
)
FEATURES = (
    "age",
    "male",
    "bmi",
    "current_smoker",
    "sbp",
    "dbp",
    "hba1c",
    "egfr",
    "log_acr",
    "cholesterol",
    "diabetes_dx",
    "hypertension_dx",
    "ace_inhibitor",
    "statin",
)

S = pa.string()
_FEATURE_FIELDS = [
    ("age", pa.int64()),
    ("male", pa.int64()),
    ("bmi", pa.float64()),
    ("current_smoker", pa.int64()),
    ("sbp", pa.float64()),
    ("dbp", pa.float64()),
    ("hba1c", pa.float64()),
    ("egfr", pa.float64()),
    ("log_acr", pa.float64()),
    ("cholesterol", pa.float64()),
    ("diabetes_dx", pa.int64()),
    ("hypertension_dx", pa.int64()),
    ("ace_inhibitor", pa.int64()),
    ("statin", pa.int64()),
]
TRAIN_SCHEMA = pa.schema([("patient_id", S), *_FEATURE_FIELDS, ("ckd_5y", pa.int64())])
TEST_SCHEMA = pa.schema([("patient_id", S), ("site", S), *_FEATURE_FIELDS])
LABEL_SCHEMA = pa.schema([("patient_id", S), ("site", S), ("ckd_5y", pa.int64())])


def site_sizes(n: int) -> list[int]:
    """Patients per hospital for a total of ``n`` (every hospital gets at least 20)."""
    shares = np.array([s[2] for s in SITES])
    sizes = np.maximum(np.floor(shares * n).astype(int), 20)
    sizes[0] += n - sizes.sum()
    return [int(x) for x in sizes]


def _site_chunk(ctx: GenContext, si: int, ci: int, m: int, hidden: bool = False):
    """``m`` patients of hospital ``si``, chunk ``ci``; ``hidden``: from the hidden streams."""
    name, _, _, mix, (sbp_off, scr_factor, a1c_off) = SITES[si]
    p = co.sample_people(ctx.stream(hidden, "site", si, "people", ci), m, mix)
    p["egfr"] = 60.0 + 6.0 * np.logaddexp(0.0, (p["egfr"] - 60.0) / 6.0)
    rng = ctx.stream(hidden, "site", si, "records", ci)
    rec = np.array([0.9, 0.75, 0.55])[p["region"]]
    dm_dx = p["diabetes"] & (rng.random(m) < rec) | (rng.random(m) < 0.01)
    htn_dx = p["hypertension"] & (rng.random(m) < rec) | (rng.random(m) < 0.015)
    acei = htn_dx & (rng.random(m) < 0.6) | dm_dx & p["hypertension"] & (rng.random(m) < 0.2)
    statin = dm_dx & (rng.random(m) < 0.5) | (p["chol"] > 6.2) & (rng.random(m) < 0.4)
    nm = np.array([1.0, 1.4, 1.8])[p["region"]]
    age_obs = np.floor(p["age"])
    # device bias: creatinine assay reads scr_factor x the truth, so eGFR is biased too
    scr = co.creatinine_from_egfr(p["egfr"] + rng.normal(0, 5, m), age_obs, p["male"])
    scr_read = scr * scr_factor * np.exp(rng.normal(0, 0.04, m) * nm)
    feats = {
        "age": ints(age_obs),
        "male": ints(p["male"]),
        "bmi": floats(p["bmi"] + rng.normal(0, 0.5, m) * nm, 1),
        "current_smoker": ints(p["smoking"] == 2),
        "sbp": floats(p["sbp"] + sbp_off + rng.normal(0, 8, m) + rng.normal(0, 4, m) * nm, 0),
        "dbp": floats(p["dbp"] + sbp_off / 2 + rng.normal(0, 6, m) * nm, 0),
        "hba1c": floats(p["hba1c"] + a1c_off + rng.normal(0, 0.25, m) * nm, 1),
        "egfr": floats(co.egfr_from_creatinine(scr_read, age_obs, p["male"]), 0),
        "log_acr": floats(p["log_acr"] + rng.normal(0, 0.35, m), 2),
        "cholesterol": floats(p["chol"] + rng.normal(0, 0.3, m) * nm, 1),
        "diabetes_dx": ints(dm_dx),
        "hypertension_dx": ints(htn_dx),
        "ace_inhibitor": ints(acei),
        "statin": ints(statin),
    }
    p_ckd = co.expit(co.linear_predictor(co.CKD_LOGIT, co.ckd_terms(p, acei)))
    y = ctx.stream(hidden, "site", si, "outcomes", ci).random(m) < p_ckd
    test = rng.random(m) < TEST_FRACTION
    return feats, y, test


def write(ctx: GenContext) -> None:
    """Write the per-hospital training tables, the pooled test features and hidden labels."""
    key = int(ctx.rng("pseudonym-key").integers(0, 2**62))
    sizes = site_sizes(ctx.n)
    fmt = ctx.fmt
    test_w = TableWriter(ctx.public_dir, "test_features", fmt, TEST_SCHEMA)
    label_w = TableWriter(ctx.hidden_dir, "test_labels", fmt, LABEL_SCHEMA)
    n_train, n_test = [], []
    offset = 0
    try:
        for si, size in enumerate(sizes):
            name = SITES[si][0]
            with TableWriter(ctx.public_dir, f"site_{name}", fmt, TRAIN_SCHEMA) as train_w:
                tr = te = 0
                for ci, (start, stop) in enumerate(chunks(size, CHUNK)):
                    feats, y, test = _site_chunk(ctx, si, ci, stop - start)
                    pid = pseudonyms("P", np.arange(offset + start, offset + stop), key)
                    sel_tr, sel_te = pa.array(~test), pa.array(test)
                    cols = {k: v.filter(sel_tr) for k, v in feats.items()}
                    train_w.write(
                        {"patient_id": pid.filter(sel_tr), **cols, "ckd_5y": ints(y[~test])}
                    )
                    site_col = pa.array([f"site_{name}"] * int(test.sum()), S)
                    if ctx.keyed:  # the test patients, features and labels: hidden streams
                        cols, y_te, _ = _site_chunk(ctx, si, ci, int(test.sum()), hidden=True)
                    else:
                        cols = {k: v.filter(sel_te) for k, v in feats.items()}
                        y_te = y[test]
                    test_w.write({"patient_id": pid.filter(sel_te), "site": site_col, **cols})
                    label_w.write(
                        {
                            "patient_id": pid.filter(sel_te),
                            "site": site_col,
                            "ckd_5y": ints(y_te),
                        }
                    )
                    tr += int((~test).sum())
                    te += int(test.sum())
                    ctx.progress(stop - start)
            n_train.append(tr)
            n_test.append(te)
            offset += size
    finally:
        test_w.close()
        label_w.close()
    write_table(
        ctx.public_dir,
        "sites",
        fmt,
        {
            "site": pa.array([f"site_{s[0]}" for s in SITES]),
            "kind": pa.array([s[1] for s in SITES]),
            "n_train": pa.array(n_train, pa.int64()),
            "n_test": pa.array(n_test, pa.int64()),
        },
    )
    truth = {
        "sites": [
            {
                "site": f"site_{s[0]}",
                "kind": s[1],
                "share": s[2],
                "case_mix": asdict(s[3]),
                "device_bias": {
                    "sbp_offset_mmHg": s[4][0],
                    "creatinine_factor": s[4][1],
                    "hba1c_offset_pct": s[4][2],
                },
            }
            for s in SITES
        ],
        "ckd_5y_logit": co.CKD_LOGIT,
        "n_patients": ctx.n,
        "seed": ctx.seed,
    }
    (ctx.hidden_dir / "sites_truth.json").write_text(json.dumps(truth, indent=2) + "\n")


SPEC = DatasetSpec(
    name="multisite",
    summary="The cohort split over 8 hospitals of very different size, case mix and device "
    "bias; pooled vs local vs federated CKD models",
    default_n=20_000,
    formats=TABULAR_FORMATS,
    write=write,
    unit="patients",
    max_n=10**8,
    min_n=400,
)
