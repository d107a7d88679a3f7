"""``label_scarce``: classify the cause of anaemia from a blood count, with very few labels.

Each person's true blood count is drawn from one of ten clusters (five presentations, women
and men apart) around textbook-style means (microcytosis with low ferritin in iron deficiency,
microcytosis with a high red-cell count in thalassaemia trait, macrocytosis in B12/folate
deficiency, high ferritin and CRP in anaemia of chronic disease), wide enough to overlap. The
label is what a haematologist's criteria say about the *true* values (:func:`diagnose`: the WHO
haemoglobin thresholds, MCV bands, ferritin thresholds that rise with inflammation, the Mentzer
index); the *measured* values add analytical noise. So most people are far from every threshold
and easy, the decision boundaries are sharp but not linear, and only the cases near them are
worth an expert's time: the setting where choosing what to label (active learning) beats
labelling at random. The clusters follow the classes closely enough for pseudo-labelling to
help. Five more routine measurements carry no class information.

Only :data:`N_LABELLED` people have a label. Public (``<root>/public/label_scarce/``):
``labelled`` (features + ``label``), ``unlabelled`` (features), ``test`` (features) and
``practice`` (features + ``label``, ``label_index`` and ``fold``: a labelled pool to practise
active learning on, fold 0, and a development set, fold 1). Hidden: ``test_labels``,
``unlabelled_labels`` (the oracle an active-learning exercise queries, served by the grader) and
``truth.json`` (cluster means, priors and the criteria).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from medai.synthetic._tables import (
    TABULAR_FORMATS,
    TableWriter,
    categorical,
    chunks,
    floats,
    ints,
    pseudonyms,
)
from medai.synthetic.core import DatasetSpec, GenContext

CHUNK = 100_000
PER_CLASS = 8  # labelled people per class (a small, class-stratified labelling effort)
N_LABELLED = PER_CLASS * 5
# The labelled people are clear-cut cases, as in a teaching file: diagnosed as they present, with
# true values within this squared distance (in spreads) of their presentation's centre.
TYPICAL_RADIUS2 = 5.0
TEST_FRACTION = 0.25
# a public, labelled look-alike of the pool (fold 0) and a development set (fold 1)
PRACTICE_FRACTION = 0.25
PRACTICE_DEV_SHARE = 0.4  # share of the practice people in its dev fold
CLASSES: tuple[str, ...] = (
    "no_anaemia",
    "iron_deficiency",
    "b12_folate_deficiency",
    "thalassaemia_trait",
    "chronic_disease",
)
# Priors of the presentations: most blood counts sent from primary care are normal. The labels'
# own frequencies follow from the criteria (about 0.85 / 0.04 / 0.03 / 0.02 / 0.06, see the card).
PRIORS = (0.90, 0.03, 0.02, 0.02, 0.03)
# Spread of each presentation relative to FEATURES: normal counts are tight, anaemias broad.
SPREAD_SCALE = (0.25, 1.0, 1.0, 1.0, 1.0)

# informative features: name, unit, decimals, log-scale?, spread of the true values (sd on the
# working scale, before SPREAD_SCALE), analytical noise of the measurement (sd, working scale),
# and the range a laboratory reports (values outside it are reported at its end)
FEATURES: tuple[tuple[str, str, int, bool, float, float, tuple[float, float]], ...] = (
    ("hb", "g/dL", 1, False, 3.9, 0.15, (3.0, 22.0)),
    ("rbc", "10^12/L", 2, False, 1.5, 0.05, (0.8, 8.5)),
    ("mcv", "fL", 0, False, 21.0, 1.0, (50.0, 140.0)),
    ("mch", "pg", 1, False, 7.8, 0.5, (12.0, 45.0)),
    ("rdw", "%", 1, False, 5.4, 0.3, (9.0, 35.0)),
    ("ferritin", "ug/L", 0, True, 2.4, 0.08, (1.0, 5000.0)),
    ("crp", "mg/L", 1, True, 3.15, 0.08, (0.1, 400.0)),
)
# class means (women, men) on the working scale (log for ferritin and CRP)
_MEANS = {
    "no_anaemia": [(13.4, 14.8), (4.5, 5.0), 90, 30.0, 13.0, (np.log(60), np.log(120)), np.log(2)],
    "iron_deficiency": [(10.2, 11.0), (4.2, 4.6), 74, 23.5, 17.0, np.log(8), np.log(2)],
    "b12_folate_deficiency": [(10.3, 11.2), (3.0, 3.3), 108, 35.5, 16.0, np.log(150), np.log(2.5)],
    "thalassaemia_trait": [(11.3, 12.4), (5.5, 6.0), 66, 21.0, 14.5, np.log(90), np.log(2)],
    "chronic_disease": [(10.6, 11.6), (3.8, 4.1), 84, 28.0, 14.5, np.log(350), np.log(40)],
}
# routine measurements unrelated to the class: name, unit, decimals, mean, sd
NUISANCE: tuple[tuple[str, str, int, float, float], ...] = (
    ("age", "years", 0, 55.0, 17.0),
    ("platelets", "10^9/L", 0, 260.0, 65.0),
    ("wbc", "10^9/L", 1, 7.0, 2.0),
    ("sodium", "mmol/L", 0, 139.0, 3.0),
    ("potassium", "mmol/L", 1, 4.3, 0.45),
)

S = pa.string()
_FEATURE_FIELDS = [("sex", S)] + [(f[0], pa.float64()) for f in FEATURES + NUISANCE]
LABELLED_SCHEMA = pa.schema(
    [("id", S), *_FEATURE_FIELDS, ("label", S), ("label_index", pa.int64())]
)
UNLABELLED_SCHEMA = pa.schema([("id", S), *_FEATURE_FIELDS])
PRACTICE_SCHEMA = pa.schema(
    [("id", S), *_FEATURE_FIELDS, ("label", S), ("label_index", pa.int64()), ("fold", pa.int64())]
)
LABEL_SCHEMA = pa.schema(
    [("id", S), ("label", S), ("label_index", pa.int64()), ("cluster", pa.int64())]
)


def _mean_table() -> np.ndarray:
    """Class means as an array of shape (class, sex, feature)."""
    out = np.zeros((len(CLASSES), 2, len(FEATURES)))
    for c, name in enumerate(CLASSES):
        for f, v in enumerate(_MEANS[name]):
            out[c, :, f] = v if not isinstance(v, tuple) else np.array(v)
    return out


MEANS = _mean_table()


# Diagnostic criteria (simplified textbook rules), applied to the true values:
HB_THRESHOLD = (12.0, 13.0)  # g/dL, women / men: WHO definition of anaemia in adults
MICRO, MACRO = 80.0, 100.0  # fL: microcytic below, macrocytic above
FERRITIN_LOW = (15.0, 70.0)  # ug/L: iron deficiency without / with inflammation (WHO 2020)
CRP_INFLAMED = 5.0  # mg/L
MENTZER = 13.0  # MCV (fL) / RBC (10^12/L) below this in microcytosis: thalassaemia trait


def diagnose(true: np.ndarray, male: np.ndarray) -> np.ndarray:
    """Class index for true values (rows in ``FEATURES`` order, working scale): the criteria.

    Not anaemic (haemoglobin at or above the sex's threshold) -> no anaemia; else macrocytic ->
    B12/folate; else ferritin below the threshold (higher when CRP shows inflammation) -> iron
    deficiency; else microcytic with a Mentzer index below 13 -> thalassaemia trait; else anaemia
    of chronic disease (inflammation, kidney disease, ...).
    """
    hb, rbc, mcv = true[:, 0], true[:, 1], true[:, 2]
    ferritin, crp = np.exp(true[:, 5]), np.exp(true[:, 6])
    anaemic = hb < np.where(male == 1, HB_THRESHOLD[1], HB_THRESHOLD[0])
    iron_low = ferritin < np.where(crp > CRP_INFLAMED, FERRITIN_LOW[1], FERRITIN_LOW[0])
    thal = (mcv < MICRO) & (mcv / np.maximum(rbc, 0.1) < MENTZER)
    label = np.select(
        [~anaemic, mcv > MACRO, iron_low, thal],
        [
            CLASSES.index(c)
            for c in (
                "no_anaemia",
                "b12_folate_deficiency",
                "iron_deficiency",
                "thalassaemia_trait",
            )
        ],
        default=CLASSES.index("chronic_disease"),
    )
    return label.astype(int)


def _chunk(ctx: GenContext, ci: int, m: int, hidden: bool = False):
    """One chunk of people; ``hidden``: drawn from the hidden streams (keyed by the secret)."""
    rng = ctx.stream(hidden, "people", ci)
    presentation = rng.choice(len(CLASSES), size=m, p=PRIORS)
    male = (rng.random(m) < 0.5).astype(int)
    sd = np.array([f[4] for f in FEATURES])
    # a shared "red-cell size" factor correlates MCV and MCH within a cluster
    z = rng.normal(0, 1, (m, len(FEATURES)))
    z[:, 3] = 0.8 * z[:, 2] + 0.6 * z[:, 3]
    true = MEANS[presentation, male] + z * sd * np.asarray(SPREAD_SCALE)[presentation, None]
    y = diagnose(true, male)
    noise = np.array([f[5] for f in FEATURES])
    x = true + ctx.stream(hidden, "analytical", ci).normal(0, 1, true.shape) * noise
    cols: dict[str, pa.Array] = {"sex": categorical(male, ("F", "M"))}
    for f, (name, _, dec, is_log, _, _, (lo, hi)) in enumerate(FEATURES):
        cols[name] = floats(np.clip(np.exp(x[:, f]) if is_log else x[:, f], lo, hi), dec)
    nrng = ctx.stream(hidden, "nuisance", ci)
    for name, _, dec, mean, s in NUISANCE:
        v = nrng.normal(mean, s, m)
        cols[name] = floats(np.clip(v, 18, 95) if name == "age" else np.maximum(v, 0.1), dec)
    part = ctx.stream(hidden, "split", ci).random(m)
    # how clear-cut a case is: its squared distance from its presentation's centre (in spreads),
    # infinite when the criteria give another diagnosis than the presentation
    atypia = np.where(y == presentation, (z**2).sum(1), np.inf)
    return cols, y, presentation * 2 + male, part, atypia


def write(ctx: GenContext) -> None:
    """Write ``labelled``/``unlabelled``/``test``/``practice`` (public) and labels (hidden)."""
    key = int(ctx.rng("pseudonym-key").integers(0, 2**62))
    fmt = ctx.fmt
    # ``part`` is uniform, so the first non-test people of each class are a random sample of it.
    w = {
        "labelled": TableWriter(ctx.public_dir, "labelled", fmt, LABELLED_SCHEMA),
        "unlabelled": TableWriter(ctx.public_dir, "unlabelled", fmt, UNLABELLED_SCHEMA),
        "test": TableWriter(ctx.public_dir, "test", fmt, UNLABELLED_SCHEMA),
        "practice": TableWriter(ctx.public_dir, "practice", fmt, PRACTICE_SCHEMA),
        "unlabelled_labels": TableWriter(ctx.hidden_dir, "unlabelled_labels", fmt, LABEL_SCHEMA),
        "test_labels": TableWriter(ctx.hidden_dir, "test_labels", fmt, LABEL_SCHEMA),
    }
    counts = {"labelled": 0, "unlabelled": 0, "test": 0, "practice": 0}
    practice_end = TEST_FRACTION + PRACTICE_FRACTION
    dev_end = TEST_FRACTION + PRACTICE_FRACTION * PRACTICE_DEV_SHARE
    try:
        for ci, (start, stop) in enumerate(chunks(ctx.n, CHUNK)):
            cols, y, cluster, part, atypia = _chunk(ctx, ci, stop - start)
            ids = pseudonyms("A", np.arange(start, stop), key)
            test = part < TEST_FRACTION
            practice = ~test & (part < practice_end)
            lab = np.zeros(len(y), dtype=bool)
            if ci == 0:  # the labelled set: the first few clear-cut pool people of each class
                for c in range(len(CLASSES)):
                    members = np.flatnonzero(~test & ~practice & (y == c))
                    clear = members[atypia[members] < TYPICAL_RADIUS2][:PER_CLASS]
                    # a small pool may lack clear-cut cases of a rare class: the least atypical
                    rest = np.setdiff1d(members, clear)
                    rest = rest[np.argsort(atypia[rest], kind="stable")]
                    lab[np.r_[clear, rest[: PER_CLASS - len(clear)]]] = True
            unl = ~test & ~practice & ~lab
            parts = {"labelled": lab, "unlabelled": unl, "test": test}
            # (features, class, cluster, rows) of each part; the people whose labels are hidden
            # (unlabelled and test) come from the hidden streams when there is a secret
            src = {name: (cols, y, cluster, sel) for name, sel in parts.items()}
            public = lab | practice
            if ctx.keyed:
                h_cols, h_y, h_cluster, _, _ = _chunk(ctx, ci, int((~public).sum()), hidden=True)
                for name in ("unlabelled", "test"):
                    src[name] = (h_cols, h_y, h_cluster, parts[name][~public])
            for name, sel in parts.items():
                f_cols, f_y, f_cluster, rows = src[name]
                mask = pa.array(rows)
                ids_sel = ids.filter(pa.array(sel))
                row = {"id": ids_sel, **{k: v.filter(mask) for k, v in f_cols.items()}}
                if name == "labelled":
                    row["label"] = categorical(f_y[rows], CLASSES)
                    row["label_index"] = ints(f_y[rows])
                w[name].write(row)
                counts[name] += int(sel.sum())
                if name != "labelled":
                    w[f"{name}_labels"].write(
                        {
                            "id": ids_sel,
                            "label": categorical(f_y[rows], CLASSES),
                            "label_index": ints(f_y[rows]),
                            "cluster": ints(f_cluster[rows]),
                        }
                    )
            mask = pa.array(practice)
            w["practice"].write(
                {
                    "id": ids.filter(mask),
                    **{k: v.filter(mask) for k, v in cols.items()},
                    "label": categorical(y[practice], CLASSES),
                    "label_index": ints(y[practice]),
                    "fold": ints((part[practice] < dev_end).astype(int)),
                }
            )
            counts["practice"] += int(practice.sum())
            ctx.progress(stop - start)
    finally:
        for writer in w.values():
            writer.close()
    truth = {
        "classes": list(CLASSES),
        "presentation_priors": dict(zip(CLASSES, PRIORS, strict=True)),
        "presentation_spread_scale": dict(zip(CLASSES, SPREAD_SCALE, strict=True)),
        "labelled": f"clear-cut cases: diagnosed as they present, sum of squared z < {TYPICAL_RADIUS2}",
        "clusters": "cluster = 2 * presentation_index + (1 if male else 0)",
        "criteria": {
            "hb_threshold_women_men": list(HB_THRESHOLD),
            "microcytic_below_mcv": MICRO,
            "macrocytic_above_mcv": MACRO,
            "ferritin_low_without_with_inflammation": list(FERRITIN_LOW),
            "inflammation_crp_above": CRP_INFLAMED,
            "mentzer_below": MENTZER,
        },
        "features": [
            {
                "name": f[0],
                "unit": f[1],
                "log_scale": f[3],
                "sd": f[4],
                "analytical_sd": f[5],
                "reported_range": list(f[6]),
            }
            for f in FEATURES
        ],
        "presentation_means_women_men": {
            c: {
                f[0]: [round(float(np.exp(v) if f[3] else v), 3) for v in MEANS[i, :, j]]
                for j, f in enumerate(FEATURES)
            }
            for i, c in enumerate(CLASSES)
        },
        "uninformative": [f[0] for f in NUISANCE],
        "counts": counts,
        "seed": ctx.seed,
    }
    (ctx.hidden_dir / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")


SPEC = DatasetSpec(
    name="label_scarce",
    summary="Cause of anaemia from a blood count: 40 labelled, thousands unlabelled, labels from "
    "diagnostic criteria (pseudo-labels, active learning with a clinician)",
    default_n=6_000,
    formats=TABULAR_FORMATS,
    write=write,
    unit="people",
    max_n=10**8,
    min_n=200,
)
