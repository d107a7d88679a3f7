"""``ehr``: a longitudinal chronic-disease cohort as joinable tables.

Public (``<root>/public/ehr/``): ``patients``, ``encounters``, ``observations``, ``diagnoses``,
``medications``, ``concepts`` (the observation dictionary) and ``outcomes_train`` (5-year CKD
and stroke outcomes of the training patients). Hidden (``<root>/hidden/ehr/``):
``outcomes_test`` (the same for test patients), ``truth`` (every patient's true, noise-free
risk factors and outcome probabilities) and ``effects.json`` (the planted coefficients).

Records cover a two-year baseline window ending at each patient's index date; outcomes happen in
the five years after it, so nothing in the public records reveals a test patient's outcome.
Patients are generated in fixed chunks with one random stream per chunk and table, so memory is
bounded, and each full chunk comes out the same whatever ``n`` is (a larger cohort extends a
smaller one chunk by chunk). With a deployment secret the test patients of each chunk (records
and outcomes) are drawn again from the hidden streams and merged in place of the public draw
(:func:`medai.synthetic._tables.merge_rows`); the training patients' rows stay byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from medai.synthetic import _cohort as co
from medai.synthetic._tables import (
    TABULAR_FORMATS,
    TableWriter,
    categorical,
    chunks,
    dates,
    day_number,
    floats,
    ints,
    merge_rows,
    pseudonyms,
    write_table,
)
from medai.synthetic.core import DatasetSpec, GenContext

if TYPE_CHECKING:
    import pandas as pd

CHUNK = 50_000  # patients per chunk; fixed so output does not depend on n
# Encounters of hidden test patients are numbered from here (public ones from 0), so that their
# pseudonyms never collide with those of the public patients (pseudonyms are 48-bit bijections).
HIDDEN_ENCOUNTERS = 1 << 47
TEST_FRACTION = 0.3
N_FOLDS = 5  # public `fold` column: 0..4 at random, for development splits of the training patients
FOLLOW_UP_DAYS = 1826
BASELINE_DAYS = 730
INDEX_START = "2019-01-01"
INDEX_SPAN_DAYS = 1096

# per region (urban, rural, under-resourced)
VISIT_RATE = np.array([2.6, 1.8, 1.1])
NOISE = np.array([1.0, 1.5, 2.2])
DX_RECORDED = np.array([0.9, 0.75, 0.55])
SMOKING_MISSING = np.array([0.08, 0.15, 0.30])
BP_ROUNDED = np.array([0.1, 0.3, 0.6])  # share of BP readings rounded to 0 or 5 (digit preference)

# item, LOINC (for orientation), description, unit, decimals
CONCEPTS: tuple[tuple[str, str, str, str, int], ...] = (
    ("sbp", "8480-6", "Systolic blood pressure", "mm[Hg]", 0),
    ("dbp", "8462-4", "Diastolic blood pressure", "mm[Hg]", 0),
    ("heart_rate", "8867-4", "Heart rate", "/min", 0),
    ("weight", "29463-7", "Body weight", "kg", 1),
    ("height", "8302-2", "Body height", "cm", 0),
    ("creatinine", "14682-9", "Creatinine, serum", "umol/L", 0),
    ("egfr", "98979-8", "eGFR, CKD-EPI 2021 (creatinine)", "mL/min/{1.73_m2}", 0),
    ("hba1c", "4548-4", "Haemoglobin A1c", "%", 1),
    ("glucose", "15074-8", "Glucose, random, blood", "mmol/L", 1),
    ("cholesterol", "14647-2", "Cholesterol, total, serum", "mmol/L", 1),
    ("acr", "14958-3", "Albumin/creatinine ratio, urine", "mg/mmol", 1),
)
ITEMS = [c[0] for c in CONCEPTS]
UNITS = [c[3] for c in CONCEPTS]

DX_CODES: tuple[tuple[str, str], ...] = (
    ("E11", "Type 2 diabetes mellitus"),
    ("I10", "Essential (primary) hypertension"),
    ("E78", "Disorders of lipoprotein metabolism (hyperlipidaemia)"),
    ("E66", "Obesity"),
    ("J06", "Acute upper respiratory infection"),
    ("M54", "Dorsalgia (back pain)"),
    ("K21", "Gastro-oesophageal reflux disease"),
)
DRUGS: tuple[tuple[str, str], ...] = (
    ("metformin", "A10BA02"),
    ("insulin", "A10AE04"),
    ("lisinopril", "C09AA03"),
    ("amlodipine", "C08CA01"),
    ("atorvastatin", "C10AA05"),
)
ENCOUNTER_TYPES = ("outpatient", "emergency", "inpatient")

S = pa.string()
SCHEMAS = {
    "patients": pa.schema(
        [
            ("patient_id", S),
            ("sex", S),
            ("birth_year", pa.int64()),
            ("region", S),
            ("index_date", pa.date32()),
            ("smoking_status", S),
            ("split", S),
            ("fold", pa.int64()),
        ]
    ),
    "encounters": pa.schema(
        [("encounter_id", S), ("patient_id", S), ("date", pa.date32()), ("type", S)]
    ),
    "observations": pa.schema(
        [
            ("patient_id", S),
            ("encounter_id", S),
            ("date", pa.date32()),
            ("item", S),
            ("value", pa.float64()),
            ("unit", S),
        ]
    ),
    "diagnoses": pa.schema(
        [
            ("patient_id", S),
            ("encounter_id", S),
            ("date", pa.date32()),
            ("icd10", S),
            ("description", S),
        ]
    ),
    "medications": pa.schema(
        [
            ("patient_id", S),
            ("encounter_id", S),
            ("start_date", pa.date32()),
            ("drug", S),
            ("atc", S),
        ]
    ),
}
OUTCOME_SCHEMA = pa.schema(
    [
        ("patient_id", S),
        ("ckd_5y", pa.int64()),
        ("ckd_days", pa.int64()),
        ("stroke_5y", pa.int64()),
        ("stroke_days", pa.int64()),
    ]
)
TRUTH_SCHEMA = pa.schema(
    [
        ("patient_id", S),
        ("split", S),
        ("age", pa.float64()),
        ("male", pa.int64()),
        ("region", S),
        ("smoking", S),
        ("bmi", pa.float64()),
        ("diabetes", pa.int64()),
        ("hypertension", pa.int64()),
        ("hba1c", pa.float64()),
        ("sbp", pa.float64()),
        ("egfr", pa.float64()),
        ("log_acr", pa.float64()),
        ("ace_inhibitor", pa.int64()),
        ("statin", pa.int64()),
        ("p_ckd", pa.float64()),
        ("p_stroke", pa.float64()),
    ]
)


def _soft_floor(x: np.ndarray, floor: float, width: float) -> np.ndarray:
    """A smooth ``max(x, floor)``: the cohort has no CKD (true eGFR >= 60) at baseline."""
    return floor + width * np.logaddexp(0.0, (x - floor) / width)


def _keys(ctx: GenContext) -> tuple[int, int]:
    k = ctx.rng("pseudonym-keys").integers(0, 2**62, size=2)
    return int(k[0]), int(k[1])


def _chunk(
    ctx: GenContext,
    ci: int,
    index: np.ndarray,
    enc_base: int,
    keys: tuple[int, int],
    hidden: bool = False,
):
    """Generate the patients at row numbers ``index`` of chunk ``ci``.

    Returns ``(tables, owners, test, n_encounters)``: table -> columns, table -> the position in
    ``index`` of the patient each row belongs to, the test mask and the number of encounters.
    ``hidden``: every patient is a test patient drawn from the hidden streams.
    """
    m = len(index)
    p = co.sample_people(ctx.stream(hidden, "people", ci), m)
    p["egfr"] = _soft_floor(p["egfr"], 60.0, 6.0)
    r = p["region"]
    rng = ctx.stream(hidden, "records", ci)

    pid = pseudonyms("P", index, keys[0])
    index_day = day_number(INDEX_START) + rng.integers(0, INDEX_SPAN_DAYS, m)
    index_year = (index_day.astype("datetime64[D]").astype("datetime64[Y]").astype(int)) + 1970
    birth_year = index_year - np.floor(p["age"]).astype(int) - (rng.random(m) < 0.5)
    smoking_obs = np.where(rng.random(m) < SMOKING_MISSING[r], -1, p["smoking"])
    test = (rng.random(m) < TEST_FRACTION) | hidden
    fold = ctx.stream(hidden, "fold", ci).integers(0, N_FOLDS, m)  # own stream

    # --- encounters in the baseline window; the last one is the index visit ---------------------
    chronic = p["diabetes"] | p["hypertension"]
    k = 1 + rng.poisson(VISIT_RATE[r] + 0.8 * chronic)
    n_enc = int(k.sum())
    pat = np.repeat(np.arange(m), k)
    last = np.cumsum(k) - 1
    first = last - k + 1
    before = rng.integers(1, BASELINE_DAYS + 1, n_enc)
    before[last] = 0
    order = np.lexsort((-before, pat))  # within patient: oldest first, index visit last
    before = before[order]
    enc_day = index_day[pat] - before
    enc_type = rng.choice(3, size=n_enc, p=[0.8, 0.12, 0.08])
    enc_type[last] = 0
    eid = pseudonyms("E", np.arange(enc_base, enc_base + n_enc), keys[1])
    years = before / 365.25

    # --- treatment, recorded diagnoses ------------------------------------------------------------
    rec = DX_RECORDED[r]
    dm_rec = p["diabetes"] & (rng.random(m) < rec) | (rng.random(m) < 0.01)
    htn_rec = p["hypertension"] & (rng.random(m) < rec) | (rng.random(m) < 0.015)
    hyperlip = (p["chol"] > 6.2) & (rng.random(m) < 0.6 * rec)
    obese = (p["bmi"] >= 30) & (rng.random(m) < 0.45 * rec)
    metformin = dm_rec & (rng.random(m) < 0.85)
    insulin = dm_rec & (p["hba1c"] > 8.5) & (rng.random(m) < 0.5)
    acei = htn_rec & (rng.random(m) < 0.6) | dm_rec & p["hypertension"] & (rng.random(m) < 0.2)
    amlodipine = htn_rec & (rng.random(m) < 0.45)
    statin = (
        dm_rec & (rng.random(m) < 0.5)
        | hyperlip & (rng.random(m) < 0.7)
        | (p["age"] > 65) & htn_rec & (rng.random(m) < 0.3)
    )

    def at_random_encounter(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        who = np.flatnonzero(mask)
        e = first[who] + np.floor(rng.random(len(who)) * k[who]).astype(int)
        return who, e

    dx_pat, dx_enc, dx_code = [], [], []
    for code, mask in enumerate(
        [
            dm_rec,
            htn_rec,
            hyperlip,
            obese,
            rng.random(m) < 0.15,
            rng.random(m) < 0.12,
            rng.random(m) < 0.10,
        ]
    ):
        who, e = at_random_encounter(mask)
        dx_pat.append(who)
        dx_enc.append(e)
        dx_code.append(np.full(len(who), code))
    dx_pat, dx_enc, dx_code = (np.concatenate(a) for a in (dx_pat, dx_enc, dx_code))
    o = np.lexsort((dx_code, dx_enc))
    dx_pat, dx_enc, dx_code = dx_pat[o], dx_enc[o], dx_code[o]

    rx_pat, rx_enc, rx_drug = [], [], []
    for d, mask in enumerate([metformin, insulin, acei, amlodipine, statin]):
        who, e = at_random_encounter(mask)
        rx_pat.append(who)
        rx_enc.append(e)
        rx_drug.append(np.full(len(who), d))
    rx_pat, rx_enc, rx_drug = (np.concatenate(a) for a in (rx_pat, rx_enc, rx_drug))
    o = np.lexsort((rx_drug, rx_enc))
    rx_pat, rx_enc, rx_drug = rx_pat[o], rx_enc[o], rx_drug[o]

    # --- observations: sparser and noisier outside cities -----------------------------------------
    re = r[pat]
    nm = NOISE[re]
    u = lambda: rng.random(n_enc)  # noqa: E731
    vitals_p = np.array([0.92, 0.8, 0.62])[re]
    kidney_p = np.array([0.45, 0.32, 0.18])[re] + 0.25 * chronic[pat]
    age_v = p["age"][pat] - years
    male_v = p["male"][pat]
    is_first = np.zeros(n_enc, dtype=bool)
    is_first[first] = True
    take = {
        "sbp": u() < vitals_p,
        "heart_rate": u() < vitals_p * 0.9,
        "weight": u() < np.array([0.75, 0.6, 0.45])[re],
        "height": is_first & (u() < np.array([0.9, 0.8, 0.6])[re]),
        "creatinine": u() < kidney_p,
        "hba1c": u() < np.array([0.3, 0.2, 0.1])[re] + 0.4 * p["diabetes"][pat],
        "glucose": u() < np.array([0.35, 0.25, 0.15])[re],
        "cholesterol": u() < np.array([0.3, 0.2, 0.1])[re],
        "acr": u() < np.array([0.15, 0.08, 0.03])[re] + 0.25 * p["diabetes"][pat],
    }
    take["dbp"] = take["sbp"]
    take["egfr"] = take["creatinine"]

    def noise(sd: float) -> np.ndarray:
        return rng.normal(0.0, sd, n_enc)

    bp_round = u() < BP_ROUNDED[re]
    sbp = p["sbp"][pat] + noise(8) + noise(4) * nm
    dbp = p["dbp"][pat] + noise(5) + noise(3) * nm
    sbp = np.where(bp_round, np.round(sbp / 5) * 5, sbp)
    dbp = np.where(bp_round, np.round(dbp / 5) * 5, dbp)
    egfr_v = p["egfr"][pat] + 1.0 * years + noise(5)
    scr = co.creatinine_from_egfr(egfr_v, age_v, male_v) * np.exp(noise(0.04) * nm)
    scr_umol = np.round(scr * 88.42)
    hba1c_v = p["hba1c"][pat] + noise(0.25) + noise(0.1) * nm
    values = {
        "sbp": sbp,
        "dbp": dbp,
        "heart_rate": p["hr"][pat] + noise(6) + noise(2) * nm,
        "weight": p["weight"][pat] * (1 + 0.004 * years * noise(1)) + noise(0.6) * nm,
        "height": p["height"][pat] + noise(0.8) * nm,
        "creatinine": scr_umol,
        "egfr": co.egfr_from_creatinine(scr_umol / 88.42, np.floor(age_v), male_v),
        "hba1c": hba1c_v,
        "glucose": np.clip(5.2 + 1.1 * (hba1c_v - 5.4) + noise(0.9) * nm, 2.5, 35),
        "cholesterol": p["chol"][pat] + noise(0.3) * nm,
        "acr": np.exp(p["log_acr"][pat] + noise(0.35) + noise(0.12) * nm),
    }
    ob_enc, ob_item, ob_val = [], [], []
    for i, item in enumerate(ITEMS):
        sel = np.flatnonzero(take[item])
        ob_enc.append(sel)
        ob_item.append(np.full(len(sel), i))
        ob_val.append(np.round(values[item][sel], CONCEPTS[i][4]))
    ob_enc, ob_item, ob_val = (np.concatenate(a) for a in (ob_enc, ob_item, ob_val))
    o = np.lexsort((ob_item, ob_enc))
    ob_enc, ob_item, ob_val = ob_enc[o], ob_item[o], ob_val[o]

    # --- outcomes within 5 years of the index date (the planted causal model) ---------------------
    orng = ctx.stream(hidden, "outcomes", ci)
    p_ckd = co.expit(co.linear_predictor(co.CKD_LOGIT, co.ckd_terms(p, acei)))
    p_stroke = co.expit(co.linear_predictor(co.STROKE_LOGIT, co.stroke_terms(p, statin)))
    ckd = orng.random(m) < p_ckd
    stroke = orng.random(m) < p_stroke
    ckd_days = orng.integers(30, FOLLOW_UP_DAYS + 1, m)
    stroke_days = orng.integers(1, FOLLOW_UP_DAYS + 1, m)

    sex = np.where(p["male"], 1, 0)
    tables = {
        "patients": {
            "patient_id": pid,
            "sex": categorical(sex, ("F", "M")),
            "birth_year": ints(birth_year),
            "region": categorical(r, co.REGIONS),
            "index_date": dates(index_day),
            "smoking_status": categorical(smoking_obs, co.SMOKING),
            "split": categorical(test.astype(int), ("train", "test")),
            "fold": ints(fold),
        },
        "encounters": {
            "encounter_id": eid,
            "patient_id": pid.take(pa.array(pat)),
            "date": dates(enc_day),
            "type": categorical(enc_type, ENCOUNTER_TYPES),
        },
        "observations": {
            "patient_id": pid.take(pa.array(pat[ob_enc])),
            "encounter_id": eid.take(pa.array(ob_enc)),
            "date": dates(enc_day[ob_enc]),
            "item": categorical(ob_item, ITEMS),
            "value": pa.array(ob_val, type=pa.float64()),
            "unit": categorical(ob_item, UNITS),
        },
        "diagnoses": {
            "patient_id": pid.take(pa.array(dx_pat)),
            "encounter_id": eid.take(pa.array(dx_enc)),
            "date": dates(enc_day[dx_enc]),
            "icd10": categorical(dx_code, [c for c, _ in DX_CODES]),
            "description": categorical(dx_code, [d for _, d in DX_CODES]),
        },
        "medications": {
            "patient_id": pid.take(pa.array(rx_pat)),
            "encounter_id": eid.take(pa.array(rx_enc)),
            "start_date": dates(enc_day[rx_enc]),
            "drug": categorical(rx_drug, [d for d, _ in DRUGS]),
            "atc": categorical(rx_drug, [a for _, a in DRUGS]),
        },
    }

    def outcome_rows(sel: np.ndarray) -> dict[str, pa.Array]:
        return {
            "patient_id": pid.filter(pa.array(sel)),
            "ckd_5y": ints(ckd[sel]),
            "ckd_days": ints(ckd_days[sel], ~ckd[sel]),
            "stroke_5y": ints(stroke[sel]),
            "stroke_days": ints(stroke_days[sel], ~stroke[sel]),
        }

    tables["outcomes_train"] = outcome_rows(~test)
    tables["outcomes_test"] = outcome_rows(test)
    tables["truth"] = {
        "patient_id": pid,
        "split": tables["patients"]["split"],
        "age": floats(p["age"], 2),
        "male": ints(p["male"]),
        "region": tables["patients"]["region"],
        "smoking": categorical(p["smoking"], co.SMOKING),
        "bmi": floats(p["bmi"], 2),
        "diabetes": ints(p["diabetes"]),
        "hypertension": ints(p["hypertension"]),
        "hba1c": floats(p["hba1c"], 3),
        "sbp": floats(p["sbp"], 2),
        "egfr": floats(p["egfr"], 2),
        "log_acr": floats(p["log_acr"], 4),
        "ace_inhibitor": ints(acei),
        "statin": ints(statin),
        "p_ckd": floats(p_ckd, 6),
        "p_stroke": floats(p_stroke, 6),
    }
    every = np.arange(m)
    owners = {
        "patients": every,
        "encounters": pat,
        "observations": pat[ob_enc],
        "diagnoses": dx_pat,
        "medications": rx_pat,
        "outcomes_train": np.flatnonzero(~test),
        "outcomes_test": np.flatnonzero(test),
        "truth": every,
    }
    return tables, owners, test, n_enc


def write(ctx: GenContext) -> None:
    """Write the cohort (see the module docstring for the files)."""
    keys = _keys(ctx)
    fmt = ctx.fmt
    writers = {name: TableWriter(ctx.public_dir, name, fmt, sch) for name, sch in SCHEMAS.items()}
    writers["outcomes_train"] = TableWriter(ctx.public_dir, "outcomes_train", fmt, OUTCOME_SCHEMA)
    writers["outcomes_test"] = TableWriter(ctx.hidden_dir, "outcomes_test", fmt, OUTCOME_SCHEMA)
    writers["truth"] = TableWriter(ctx.hidden_dir, "truth", fmt, TRUTH_SCHEMA)
    try:
        enc_base, hidden_enc = 0, HIDDEN_ENCOUNTERS
        for ci, (start, stop) in enumerate(chunks(ctx.n, CHUNK)):
            tables, owners, test, n_enc = _chunk(ctx, ci, np.arange(start, stop), enc_base, keys)
            enc_base += n_enc
            if ctx.keyed:  # the test patients, records and outcomes, from the hidden streams
                at = np.flatnonzero(test)
                hidden, h_owners, _, h_enc = _chunk(ctx, ci, start + at, hidden_enc, keys, True)
                hidden_enc += h_enc
                tables = {
                    name: merge_rows(cols, owners[name], ~test, hidden[name], at[h_owners[name]])
                    for name, cols in tables.items()
                }
            for name, cols in tables.items():
                writers[name].write(cols)
            ctx.progress(stop - start)
    finally:
        for w in writers.values():
            w.close()
    write_table(
        ctx.public_dir,
        "concepts",
        fmt,
        {
            "item": pa.array(ITEMS),
            "loinc": pa.array([c[1] for c in CONCEPTS]),
            "description": pa.array([c[2] for c in CONCEPTS]),
            "unit": pa.array(UNITS),
        },
    )
    effects = {
        "outcome_model": "logistic; P(event within 5 years) = expit(sum(coef * term))",
        "ckd_5y": co.CKD_LOGIT,
        "stroke_5y": co.STROKE_LOGIT,
        "ckd_odds_ratios": {k: round(float(np.exp(v)), 4) for k, v in co.CKD_LOGIT.items()},
        "stroke_odds_ratios": {k: round(float(np.exp(v)), 4) for k, v in co.STROKE_LOGIT.items()},
        "n_patients": ctx.n,
        "seed": ctx.seed,
    }
    (ctx.hidden_dir / "effects.json").write_text(json.dumps(effects, indent=2) + "\n")


SPEC = DatasetSpec(
    name="ehr",
    summary="Longitudinal chronic-disease cohort (patients, encounters, observations, "
    "diagnoses, medications); predict 5-year CKD/stroke",
    default_n=10_000,
    formats=TABULAR_FORMATS,
    write=write,
    unit="patients",
    max_n=10**8,
)


def baseline_features(public_dir: Path | str, fmt: str = "csv") -> pd.DataFrame:
    """One row per patient of baseline features built from the public tables (a reference recipe).

    Columns: age, male, region dummies, smoking dummies, the mean of each observation item over
    the baseline window (NaN when never measured), the number of encounters, and 0/1 flags for
    each recorded diagnosis and medication. Indexed by ``patient_id``; includes ``split``.
    """
    import pandas as pd

    from medai.synthetic._tables import EXTENSIONS

    def read(name: str) -> pd.DataFrame:
        path = Path(public_dir) / f"{name}{EXTENSIONS[fmt]}"
        return pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path)

    pts = read("patients").set_index("patient_id")
    index_year = pd.to_datetime(pts["index_date"]).dt.year
    X = pd.DataFrame(index=pts.index)
    X["age"] = index_year - pts["birth_year"]
    X["male"] = (pts["sex"] == "M").astype(int)
    for reg in co.REGIONS[1:]:
        X[f"region_{reg}"] = (pts["region"] == reg).astype(int)
    for s in co.SMOKING[1:]:
        X[f"smoking_{s}"] = (pts["smoking_status"] == s).astype(int)
    X["smoking_missing"] = pts["smoking_status"].isna().astype(int)
    obs = read("observations")
    X = X.join(obs.pivot_table(index="patient_id", columns="item", values="value", aggfunc="mean"))
    X["n_encounters"] = read("encounters").groupby("patient_id").size()
    dx = read("diagnoses")
    X = X.join(pd.crosstab(dx["patient_id"], "dx_" + dx["icd10"]).clip(upper=1))
    rx = read("medications")
    X = X.join(pd.crosstab(rx["patient_id"], "rx_" + rx["drug"]).clip(upper=1))
    flags = [c for c in X.columns if c.startswith(("dx_", "rx_"))]
    X[flags] = X[flags].fillna(0).astype(int)
    X["split"] = pts["split"]
    return X
