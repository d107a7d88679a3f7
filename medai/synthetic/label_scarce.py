"""``label_scarce``: classify the cause of anaemia from a blood count, with very few labels.

Each person belongs to one of five classes (no anaemia, iron deficiency, vitamin B12/folate
deficiency, thalassaemia trait, anaemia of chronic disease). Within a class, women and men form
two clusters (different haemoglobin and red-cell count), so the data has ten clusters that line
up with the classes: the cluster assumption that pseudo-labelling and label propagation rely on
holds. The seven informative measurements are drawn around textbook-style class means (e.g.
microcytosis with low ferritin in iron deficiency, microcytosis with a high red-cell count and
normal ferritin in thalassaemia trait, macrocytosis in B12/folate deficiency, high ferritin and
CRP in anaemia of chronic disease); five more routine measurements carry no class information.

Only :data:`N_LABELLED` people have a label. Public (``<root>/public/label_scarce/``):
``labelled`` (features + ``label``), ``unlabelled`` (features) and ``test`` (features). Hidden:
``test_labels``, ``unlabelled_labels`` (the oracle an active-learning exercise queries) and
``truth.json`` (class means and priors).
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
TEST_FRACTION = 0.25
CLASSES: tuple[str, ...] = (
    "no_anaemia",
    "iron_deficiency",
    "b12_folate_deficiency",
    "thalassaemia_trait",
    "chronic_disease",
)
PRIORS = (0.42, 0.22, 0.10, 0.11, 0.15)

# informative features: name, unit, decimals, log-scale?, spread (sd on the working scale)
FEATURES: tuple[tuple[str, str, int, bool, float], ...] = (
    ("hb", "g/dL", 1, False, 1.3),
    ("rbc", "10^12/L", 2, False, 0.5),
    ("mcv", "fL", 0, False, 7.0),
    ("mch", "pg", 1, False, 2.6),
    ("rdw", "%", 1, False, 1.8),
    ("ferritin", "ug/L", 0, True, 0.8),
    ("crp", "mg/L", 1, True, 1.05),
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
LABELLED_SCHEMA = pa.schema([("id", S), *_FEATURE_FIELDS, ("label", S)])
UNLABELLED_SCHEMA = pa.schema([("id", S), *_FEATURE_FIELDS])
LABEL_SCHEMA = pa.schema([("id", S), ("label", S), ("cluster", pa.int64())])


def _mean_table() -> np.ndarray:
    """Class means as an array of shape (class, sex, feature)."""
    out = np.zeros((len(CLASSES), 2, len(FEATURES)))
    for c, name in enumerate(CLASSES):
        for f, v in enumerate(_MEANS[name]):
            out[c, :, f] = v if not isinstance(v, tuple) else np.array(v)
    return out


MEANS = _mean_table()


def _chunk(ctx: GenContext, ci: int, m: int, hidden: bool = False):
    rng = ctx.stream(hidden, "people", ci)
    y = rng.choice(len(CLASSES), size=m, p=PRIORS)
    male = (rng.random(m) < 0.5).astype(int)
    sd = np.array([f[4] for f in FEATURES])
    # a shared "red-cell size" factor correlates MCV and MCH within a cluster
    z = rng.normal(0, 1, (m, len(FEATURES)))
    z[:, 3] = 0.8 * z[:, 2] + 0.6 * z[:, 3]
    x = MEANS[y, male] + z * sd
    cols: dict[str, pa.Array] = {"sex": categorical(male, ("F", "M"))}
    for f, (name, _, dec, is_log, _) in enumerate(FEATURES):
        # log-normal measurements are reported down to the lab's smallest step (1 or 0.1)
        v = np.maximum(np.exp(x[:, f]), 10.0**-dec) if is_log else np.maximum(x[:, f], 0.1)
        cols[name] = floats(v, dec)
    nrng = ctx.stream(hidden, "nuisance", ci)
    for name, _, dec, mean, s in NUISANCE:
        v = nrng.normal(mean, s, m)
        cols[name] = floats(np.clip(v, 18, 95) if name == "age" else np.maximum(v, 0.1), dec)
    part = ctx.stream(hidden, "split", ci).random(m)
    return cols, y, y * 2 + male, part


def write(ctx: GenContext) -> None:
    """Write ``labelled``/``unlabelled``/``test`` (public) and their labels (hidden)."""
    key = int(ctx.rng("pseudonym-key").integers(0, 2**62))
    fmt = ctx.fmt
    # ``part`` is uniform, so the first non-test people of each class are a random sample of it.
    w = {
        "labelled": TableWriter(ctx.public_dir, "labelled", fmt, LABELLED_SCHEMA),
        "unlabelled": TableWriter(ctx.public_dir, "unlabelled", fmt, UNLABELLED_SCHEMA),
        "test": TableWriter(ctx.public_dir, "test", fmt, UNLABELLED_SCHEMA),
        "unlabelled_labels": TableWriter(ctx.hidden_dir, "unlabelled_labels", fmt, LABEL_SCHEMA),
        "test_labels": TableWriter(ctx.hidden_dir, "test_labels", fmt, LABEL_SCHEMA),
    }
    counts = {"labelled": 0, "unlabelled": 0, "test": 0}
    try:
        for ci, (start, stop) in enumerate(chunks(ctx.n, CHUNK)):
            cols, y, cluster, part = _chunk(ctx, ci, stop - start)
            ids = pseudonyms("A", np.arange(start, stop), key)
            test = part < TEST_FRACTION
            lab = np.zeros(len(y), dtype=bool)
            if ci == 0:  # the labelled set: the first few non-test people of each class
                for c in range(len(CLASSES)):
                    lab[np.flatnonzero(~test & (y == c))[:PER_CLASS]] = True
            unl = ~test & ~lab
            parts = {"labelled": lab, "unlabelled": unl, "test": test}
            # (features, class, cluster, rows) of each part; the people whose labels are hidden
            # (unlabelled and test) come from the hidden streams when there is a secret
            src = {name: (cols, y, cluster, sel) for name, sel in parts.items()}
            if ctx.keyed:
                h_cols, h_y, h_cluster, _ = _chunk(ctx, ci, int((~lab).sum()), hidden=True)
                for name in ("unlabelled", "test"):
                    src[name] = (h_cols, h_y, h_cluster, parts[name][~lab])
            for name, sel in parts.items():
                f_cols, f_y, f_cluster, rows = src[name]
                mask = pa.array(rows)
                ids_sel = ids.filter(pa.array(sel))
                row = {"id": ids_sel, **{k: v.filter(mask) for k, v in f_cols.items()}}
                if name == "labelled":
                    row["label"] = categorical(f_y[rows], CLASSES)
                w[name].write(row)
                counts[name] += int(sel.sum())
                if name != "labelled":
                    w[f"{name}_labels"].write(
                        {
                            "id": ids_sel,
                            "label": categorical(f_y[rows], CLASSES),
                            "cluster": ints(f_cluster[rows]),
                        }
                    )
            ctx.progress(stop - start)
    finally:
        for writer in w.values():
            writer.close()
    truth = {
        "classes": list(CLASSES),
        "priors": dict(zip(CLASSES, PRIORS, strict=True)),
        "clusters": "cluster = 2 * class_index + (1 if male else 0)",
        "features": [{"name": f[0], "unit": f[1], "log_scale": f[3], "sd": f[4]} for f in FEATURES],
        "class_means_women_men": {
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
    summary="Cause of anaemia from a blood count: 40 labelled, thousands unlabelled, 10 clusters "
    "(pseudo-labels, active learning)",
    default_n=6_000,
    formats=TABULAR_FORMATS,
    write=write,
    unit="people",
    max_n=10**8,
    min_n=200,
)
