"""``survival``: time to a first major cardiovascular event, with censoring and known hazard ratios.

People come from the shared latent population (:mod:`medai.synthetic._cohort`). Event times
follow a Weibull proportional-hazards model, h(t | x) = λ ρ t^(ρ-1) exp(β·x), drawn by inverting
the survival function (Bender, Augustin & Blettner, Stat Med 2005;24:1713-23). Follow-up ends at
the first of: the event, loss to follow-up (exponential, 3 % a year) or the end of the study
(entry staggered over 3 years, study closes 8 years after the first entry).

Statin treatment is *not* randomised: older people and people with diabetes or hypertension get
it more often, so an unadjusted comparison is confounded; a Cox model with all covariates
recovers the planted hazard ratios.

Public (``<root>/public/survival/``): ``train`` (covariates, ``time_days``, ``event``) and
``test`` (covariates only). Hidden: ``test_outcomes`` (time, event and true linear predictor of
the test patients) and ``effects.json``.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from medai.synthetic import _cohort as co
from medai.synthetic._tables import TABULAR_FORMATS, TableWriter, chunks, floats, ints, pseudonyms
from medai.synthetic.core import DatasetSpec, GenContext

CHUNK = 100_000
TEST_FRACTION = 0.3
WEIBULL_SHAPE = 1.3  # rho
WEIBULL_SCALE = 0.012  # lambda, per year**rho at the reference covariates
ENTRY_YEARS = 3.0
STUDY_YEARS = 8.0
DROPOUT_RATE = 0.03  # per year
N_FOLDS = 5  # public `fold` column of `train`: 0..4 at random, for development splits

# True log hazard ratios (per unit of the named covariate as published in the tables).
LOG_HR: dict[str, float] = {
    "age_per_10y": float(np.log(1.7)),  # (age - 60) / 10
    "male": float(np.log(1.4)),
    "diabetes": float(np.log(1.8)),
    "hypertension": float(np.log(1.5)),
    "current_smoker": float(np.log(2.0)),
    "sbp_per_10": float(np.log(1.12)),  # (sbp - 130) / 10
    "statin": float(np.log(0.7)),
}

S = pa.string()
_COVARIATES = [
    ("age", pa.float64()),
    ("male", pa.int64()),
    ("diabetes", pa.int64()),
    ("hypertension", pa.int64()),
    ("current_smoker", pa.int64()),
    ("sbp", pa.float64()),
    ("statin", pa.int64()),
]
TRAIN_SCHEMA = pa.schema(
    [
        ("patient_id", S),
        *_COVARIATES,
        ("time_days", pa.int64()),
        ("event", pa.int64()),
        ("fold", pa.int64()),
    ]
)
TEST_SCHEMA = pa.schema([("patient_id", S), *_COVARIATES])
HIDDEN_SCHEMA = pa.schema(
    [
        ("patient_id", S),
        ("time_days", pa.int64()),
        ("event", pa.int64()),
        ("linear_predictor", pa.float64()),
    ]
)


def _chunk(ctx: GenContext, ci: int, m: int, hidden: bool = False):
    """``m`` patients of chunk ``ci``; ``hidden``: drawn from the hidden streams (test patients)."""
    p = co.sample_people(ctx.stream(hidden, "people", ci), m)
    rng = ctx.stream(hidden, "events", ci)
    age = np.round(p["age"], 1)
    sbp = np.round(p["sbp"])
    statin_logit = -1.6 + 0.5 * (age - 60) / 10 + 1.0 * p["diabetes"] + 0.6 * p["hypertension"]
    statin = rng.random(m) < co.expit(statin_logit)
    x = {
        "age_per_10y": (age - 60) / 10,
        "male": p["male"].astype(float),
        "diabetes": p["diabetes"].astype(float),
        "hypertension": p["hypertension"].astype(float),
        "current_smoker": (p["smoking"] == 2).astype(float),
        "sbp_per_10": (sbp - 130) / 10,
        "statin": statin.astype(float),
    }
    lp = sum(LOG_HR[k] * v for k, v in x.items())
    # inverse-transform sampling of a Weibull PH time: S(t) = exp(-lambda t^rho e^lp)
    t_event = (-np.log(rng.random(m)) / (WEIBULL_SCALE * np.exp(lp))) ** (1 / WEIBULL_SHAPE)
    t_admin = STUDY_YEARS - rng.uniform(0, ENTRY_YEARS, m)
    t_drop = rng.exponential(1 / DROPOUT_RATE, m)
    t_obs = np.minimum(t_event, np.minimum(t_admin, t_drop))
    event = t_event <= np.minimum(t_admin, t_drop)
    days = np.maximum(np.ceil(t_obs * 365.25), 1)
    cov = {
        "age": floats(age, 1),
        "male": ints(p["male"]),
        "diabetes": ints(p["diabetes"]),
        "hypertension": ints(p["hypertension"]),
        "current_smoker": ints(p["smoking"] == 2),
        "sbp": floats(sbp, 0),
        "statin": ints(statin),
    }
    test = ctx.rng("split", ci).random(m) < TEST_FRACTION
    fold = ctx.rng("fold", ci).integers(0, N_FOLDS, m)
    return cov, days, event, lp, test, fold


def write(ctx: GenContext) -> None:
    """Write ``train`` and ``test`` (public) and ``test_outcomes`` + ``effects.json`` (hidden)."""
    key = int(ctx.rng("pseudonym-key").integers(0, 2**62))
    fmt = ctx.fmt
    w_train = TableWriter(ctx.public_dir, "train", fmt, TRAIN_SCHEMA)
    w_test = TableWriter(ctx.public_dir, "test", fmt, TEST_SCHEMA)
    w_hidden = TableWriter(ctx.hidden_dir, "test_outcomes", fmt, HIDDEN_SCHEMA)
    events = 0
    try:
        for ci, (start, stop) in enumerate(chunks(ctx.n, CHUNK)):
            cov, days, event, lp, test, fold = _chunk(ctx, ci, stop - start)
            pid = pseudonyms("S", np.arange(start, stop), key)
            tr, te = pa.array(~test), pa.array(test)
            train_events = event[~test].sum()
            w_train.write(
                {
                    "patient_id": pid.filter(tr),
                    **{k: v.filter(tr) for k, v in cov.items()},
                    "time_days": ints(days[~test]),
                    "event": ints(event[~test]),
                    "fold": ints(fold[~test]),
                }
            )
            if ctx.keyed:  # the test patients, covariates and outcomes, from the hidden streams
                cov, days, event, lp, *_ = _chunk(ctx, ci, int(test.sum()), hidden=True)
            else:
                cov = {k: v.filter(te) for k, v in cov.items()}
                days, event, lp = days[test], event[test], lp[test]
            w_test.write({"patient_id": pid.filter(te), **cov})
            w_hidden.write(
                {
                    "patient_id": pid.filter(te),
                    "time_days": ints(days),
                    "event": ints(event),
                    "linear_predictor": floats(lp, 6),
                }
            )
            events += int(event.sum()) + int(train_events)
            ctx.progress(stop - start)
    finally:
        for w in (w_train, w_test, w_hidden):
            w.close()
    effects = {
        "model": "Weibull proportional hazards, h(t|x) = lambda*rho*t^(rho-1)*exp(sum(b*x)), t in years",
        "log_hazard_ratios": LOG_HR,
        "hazard_ratios": {k: round(float(np.exp(v)), 4) for k, v in LOG_HR.items()},
        "covariate_terms": {
            "age_per_10y": "(age - 60) / 10",
            "sbp_per_10": "(sbp - 130) / 10",
        },
        "weibull_shape": WEIBULL_SHAPE,
        "weibull_scale": WEIBULL_SCALE,
        "censoring": {
            "entry_years": ENTRY_YEARS,
            "study_years": STUDY_YEARS,
            "dropout_per_year": DROPOUT_RATE,
        },
        "n_patients": ctx.n,
        "n_events": events,
        "seed": ctx.seed,
    }
    (ctx.hidden_dir / "effects.json").write_text(json.dumps(effects, indent=2) + "\n")


SPEC = DatasetSpec(
    name="survival",
    summary="Time to first major cardiovascular event with censoring and known hazard ratios "
    "(Cox-recoverable; statin use confounded)",
    default_n=10_000,
    formats=TABULAR_FORMATS,
    write=write,
    unit="patients",
    max_n=10**8,
    min_n=50,
)
