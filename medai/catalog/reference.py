"""Reference models: small scikit-learn models the course trains itself, from public data.

Each :class:`Recipe` names a public synthetic dataset (generated with a fixed size and seed into
a temporary folder, so the data, and therefore the model, are the same on every machine), the
features, the estimator, and how rows split into fitting and evaluation. ``medai models build``
runs them into the models folder in a few seconds on a CPU; nothing is downloaded.

A reference model never predicts an outcome a lab grades (a trainee could hand it in instead of
their own work): the two here predict 5-year *stroke*, which no lab grades, from the EHR cohort
of modules 2 and 3. ``tests/test_catalog_models.py`` checks that rule against every
``labs/*/tasks.yaml``. The features are deliberately simpler than the ones module 3 asks for
(last values rather than phenotypes), so this code is no answer to that lab either.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medai.catalog.cards import ModelCard, ModelData, ReleaseCheck
from medai.catalog.metrics import evaluate

EHR_N = 20_000
EHR_SEED = 0
# Bump the last part whenever the features, estimators or evaluation change: `medai up`
# rebuilds reference models whose card carries another version.
VERSION = f"ehr-n{EHR_N}-s{EHR_SEED}-v2"
THRESHOLD = 0.10  # invite for a stroke-prevention review at >= 10 % five-year risk
SUBGROUP_COLUMNS = ("sex", "region", "age_band")
LAST_ITEMS = ("sbp", "hba1c", "egfr", "cholesterol")
MAX_SUBGROUP_AUROC_GAP = 0.15  # a larger gap between subgroups fails the release check
MIN_AUROC = 0.65
MIN_EVENTS = 20  # subgroups with fewer events are too noisy to judge a gap on


@dataclass(frozen=True)
class Dataset:
    """One model's rows: features, outcome, subgroup labels, and which rows fit or evaluate."""

    X: pd.DataFrame
    y: pd.Series
    groups: pd.DataFrame
    fit: np.ndarray  # boolean masks over the rows
    evaluate: np.ndarray


def _last_values(obs: pd.DataFrame, items: tuple[str, ...]) -> pd.DataFrame:
    obs = obs[obs["item"].isin(items)].sort_values(["patient_id", "date", "item"], kind="stable")
    last = obs.groupby(["patient_id", "item"])["value"].last().unstack("item")
    return last.reindex(columns=list(items)).add_prefix("last_")


def ehr_stroke_rows(public: Path) -> Dataset:
    """Training patients of the EHR cohort, one row each: baseline features and ``stroke_5y``.

    Fitted on folds 1-4, evaluated on fold 0 (the course's development fold); test patients,
    whose outcomes are hidden, are not used at all.
    """
    read = _reader(public)
    patients = read("patients").set_index("patient_id")
    patients = patients[patients["split"] == "train"]
    outcomes = read("outcomes_train").set_index("patient_id")
    obs = read("observations")
    dx = read("diagnoses")
    enc = read("encounters")
    # every record of this extract lies before its patient's index date (the card says so)
    age = pd.to_datetime(patients["index_date"]).dt.year - patients["birth_year"]
    X = pd.DataFrame(index=patients.index)
    X["age"] = age
    X["male"] = (patients["sex"] == "M").astype(int)
    X["smoker_current"] = (patients["smoking_status"] == "current").astype(int)
    X["smoking_unrecorded"] = patients["smoking_status"].isna().astype(int)
    X["rural"] = (patients["region"] == "rural").astype(int)
    X["under_resourced"] = (patients["region"] == "under_resourced").astype(int)
    X = X.join(_last_values(obs[obs["patient_id"].isin(X.index)], LAST_ITEMS))
    X["visits"] = enc["patient_id"].value_counts().reindex(X.index).fillna(0).astype(int)
    for code, col in (("I10", "coded_hypertension"), ("E11", "coded_diabetes")):
        X[col] = X.index.isin(dx.loc[dx["icd10"] == code, "patient_id"]).astype(int)
    X = X.sort_index()
    y = outcomes["stroke_5y"].reindex(X.index).astype(int)
    pts = patients.reindex(X.index)
    groups = pd.DataFrame(
        {
            "sex": pts["sex"].astype(str),
            "region": pts["region"].astype(str),
            "age_band": pd.cut(
                age.reindex(X.index), [0, 59, 69, 200], labels=["<60", "60-69", "70+"]
            ).astype(str),
        },
        index=X.index,
    )
    fold = pts["fold"].to_numpy()
    return Dataset(X=X, y=y, groups=groups, fit=fold != 0, evaluate=fold == 0)


def _reader(public: Path) -> Callable[[str], pd.DataFrame]:
    def read(table: str) -> pd.DataFrame:
        for ext, fn in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
            if (public / f"{table}{ext}").exists():
                return fn(public / f"{table}{ext}")
        raise FileNotFoundError(f"no table '{table}' (.csv or .parquet) in {public}")

    return read


def _logistic() -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True),
        StandardScaler(),
        LogisticRegression(C=0.1, max_iter=2000),
    )


def _boosting() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    # fixed iterations, no early stopping: the same fit on every run
    return HistGradientBoostingClassifier(
        max_iter=80,
        learning_rate=0.08,
        max_leaf_nodes=8,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=0,
    )


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    algorithm: str
    make: Callable[[], Any]
    summary: str


COMMON_NOT_FOR = [
    "Any decision about a real patient: it was trained on synthetic data only.",
    "Predicting CKD or any outcome a lab grades (hand in your own model there).",
]

RECIPES: tuple[Recipe, ...] = (
    Recipe(
        name="stroke-risk-logistic",
        title="Five-year stroke risk, logistic regression (EHR cohort)",
        algorithm="scikit-learn Pipeline: SimpleImputer(median, add_indicator) -> StandardScaler "
        "-> LogisticRegression(C=0.1)",
        make=_logistic,
        summary="Risk of a first stroke within five years of the index date, from age, sex, "
        "smoking, region, last blood pressure, HbA1c, eGFR and cholesterol, visit count and "
        "coded hypertension and diabetes.",
    ),
    Recipe(
        name="stroke-risk-boosting",
        title="Five-year stroke risk, gradient boosting (EHR cohort)",
        algorithm="scikit-learn HistGradientBoostingClassifier(max_iter=80, "
        "learning_rate=0.08, max_leaf_nodes=8, l2_regularization=1.0), missing values "
        "handled natively",
        make=_boosting,
        summary="The same task and inputs as stroke-risk-logistic with a tree ensemble: compare "
        "the two cards to see what flexibility buys on this many patients.",
    ),
)


def recipe_names() -> list[str]:
    return [r.name for r in RECIPES]


def train(recipe: Recipe, rows: Dataset) -> tuple[Any, ModelCard]:
    """Fit ``recipe`` on ``rows`` and write its card (``sha256`` is filled in on writing)."""
    model = recipe.make()
    model.fit(rows.X[rows.fit], rows.y[rows.fit])
    risk = model.predict_proba(rows.X[rows.evaluate])[:, 1]
    overall, subgroups = evaluate(
        rows.y[rows.evaluate].to_numpy(), risk, rows.groups[rows.evaluate], THRESHOLD
    )
    card = ModelCard(
        name=recipe.name,
        title=recipe.title,
        kind="reference",
        version=VERSION,
        author="course",
        summary=recipe.summary,
        intended_use="Teaching: read a model card, compare models and subgroups, calibrate, "
        "explain, or use as a baseline in your own analysis of the EHR cohort "
        "(`medai.catalog.load_model`).",
        not_for=COMMON_NOT_FOR,
        algorithm=recipe.algorithm,
        data=ModelData(
            dataset="ehr",
            access="public",
            recipe=f"medai data generate ehr --n {EHR_N} --seed {EHR_SEED}",
            target="stroke_5y (first stroke within 5 years of the index date)",
            features=list(rows.X.columns),
            training="training patients (split == 'train') in folds 1-4",
            evaluation="training patients in fold 0 (the course's development fold)",
            n_train=int(rows.fit.sum()),
            n_eval=int(rows.evaluate.sum()),
        ),
        threshold=THRESHOLD,
        metrics=overall,
        subgroups=subgroups,
        release_checks=release_checks(overall, subgroups),
        limitations=[
            f"Evaluated on one development fold: {int(rows.evaluate.sum()):,} patients, "
            f"{int(rows.y[rows.evaluate].sum())} strokes. Subgroup figures with few events "
            "are noisy; the subgroup-gap check ignores subgroups with fewer than "
            f"{MIN_EVENTS} events.",
            "Features are the last recorded values: a patient measured rarely (often in rural "
            "and under-resourced settings) is described by older, fewer values.",
            "Synthetic data from a known model: real cohorts have effects and biases this one "
            "does not.",
        ],
        module="03-early-warning",
        sha256="0" * 64,
    )
    return model, card


def release_checks(overall: dict, subgroups: list) -> list[ReleaseCheck]:
    """The checks a reference model passes before it is published (all recorded, pass or fail)."""
    aurocs = {
        f"{s.attribute}={s.group}": s.metrics["auroc"]
        for s in subgroups
        if s.positives >= MIN_EVENTS
    }
    defined = {k: v for k, v in aurocs.items() if v is not None}
    gap = max(defined.values()) - min(defined.values()) if defined else 0.0
    worst = min(defined, key=defined.get) if defined else "-"
    auroc = overall["auroc"] or 0.0
    return [
        ReleaseCheck(
            name="public data only",
            passed=True,
            detail="fitted on public synthetic training rows; no hidden split or private data "
            "was read",
        ),
        ReleaseCheck(
            name="no graded outcome",
            passed=True,
            detail="predicts stroke_5y, which no lab grades",
        ),
        ReleaseCheck(
            name="discrimination",
            passed=auroc >= MIN_AUROC,
            detail=f"AUROC {auroc:.3f} on the evaluation rows (required: >= {MIN_AUROC})",
        ),
        ReleaseCheck(
            name="subgroup gap",
            passed=gap <= MAX_SUBGROUP_AUROC_GAP,
            detail=f"largest AUROC gap between subgroups with >= {MIN_EVENTS} events {gap:.3f} "
            f"(lowest: {worst}; allowed: <= {MAX_SUBGROUP_AUROC_GAP})",
        ),
        ReleaseCheck(
            name="safe file format",
            passed=True,
            detail="stored with skops; it holds only scikit-learn/NumPy types (checked on "
            "writing and on every load)",
        ),
    ]


def generate_ehr(root: Path) -> Path:
    """The EHR cohort of the reference models, generated into ``root``; its public folder."""
    from medai.synthetic.core import generate

    return generate("ehr", root, n=EHR_N, seed=EHR_SEED, fmt="parquet")


def build(models: Path, names: list[str] | None = None, data: Path | None = None) -> list[Path]:
    """Train the reference models (all, or ``names``) into ``models``; return their folders.

    ``data``: the EHR public folder to train on (default: generated afresh in a temporary
    folder from the fixed recipe, about a second).
    """
    from medai.catalog.models import ModelError, write_model

    known = {r.name: r for r in RECIPES}
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise ModelError(f"no reference model {', '.join(unknown)}; choose from {', '.join(known)}")
    chosen = [known[n] for n in names] if names else list(RECIPES)
    from threadpoolctl import threadpool_limits

    # One thread: the fits are small, and on a shared machine OpenMP's threads spend more time
    # waiting for each other than working (20x slower measured on 2 busy cores); the results
    # are the same either way.
    with threadpool_limits(1), tempfile.TemporaryDirectory(prefix="medai-models-") as tmp:
        public = data if data is not None else generate_ehr(Path(tmp))
        rows = ehr_stroke_rows(public)
        out = []
        for recipe in chosen:
            model, card = train(recipe, rows)
            out.append(write_model(models, model, card))
    return out
