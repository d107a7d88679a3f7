"""Lab M1 (de-identification): the reference meets its thresholds, naive answers do not.

- The reference de-identifier, learning names from the public notes, reaches the full-marks
  thresholds of ``tasks.yaml`` on the *hidden* test notes of several seeds; masking every number
  lands below the zero-marks thresholds (scored with the dataset's own ``score_spans``).
- The reference functions agree with independent implementations on inputs drawn the way the
  grader draws them (the check character with the notes generator's, suppression with a plain
  counter); naive versions score almost nothing against the reference.
- The released table is 5-anonymous; the raw table is not.
- Under papermill, a notebook with naive answers fails the public checks.

The reference notebook itself runs in the notebook CI (tests/test_notebooks.py).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from medai.autograder.scoring import metric_fraction
from medai.synthetic.notes import id_check_char, score_spans
from medai.testing.labkit import LabKit, Run, generate, read_jsonl, run_cells

KIT = LabKit.of("m1-deid")

NAIVE = KIT.naive  # by answer cell: medai/testing/labs/m1-deid.yaml


@pytest.fixture(scope="module")
def data(tmp_path_factory, data_key) -> Path:
    root = tmp_path_factory.mktemp("m1data")
    generate("ehr", root / "ehr", n=2000, seed=0, secret=data_key)
    for seed in (1, 2, 3):  # hidden test notes drawn with the key, as on a hub
        generate("notes", root / f"notes{seed}", n=600, seed=seed, secret=data_key)
    return root


def _labs(data: Path, nb, seed: int = 1) -> Run:
    """Run the lab's cells in-process (no data loading); what each task was given."""
    notes = data / f"notes{seed}" / "public" / "notes"
    ns: dict = {
        "train_notes": read_jsonl(notes / "train.jsonl"),
        "patients": pd.read_csv(data / "ehr" / "public" / "ehr" / "patients.csv"),
        "score_spans": score_spans,
    }
    exec("import json, re\nimport numpy as np\nimport pandas as pd", ns)
    run = run_cells(nb, skip={"parameters", "setup"}, ns=ns)
    assert set(run.checked) == set(KIT.tasks)
    return run


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reference_and_naive_on_hidden_notes(data, seed):
    notes = data / f"notes{seed}"
    test = read_jsonl(notes / "public" / "notes" / "test.jsonl")
    gold = [r["spans"] for r in read_jsonl(notes / "hidden" / "notes" / "test_spans.jsonl")]
    for variant, want in ((KIT.source(), 1.0), (KIT.variant(NAIVE), 0.0)):
        detect = _labs(data, variant, seed).checked["deid"]
        s = score_spans(gold, detect(test))
        got = {"span_recall": s["recall"], "span_precision": s["precision"]}
        fractions = [
            metric_fraction(got[m.name], m.zero_marks_at, m.full_marks_at)
            for m in KIT.tasks["deid"].metrics
        ]
        assert fractions == [want, want], got


def _independent_suppressed(table: pd.DataFrame, band_width: int, k: int) -> float:
    year = [int(d[:4]) for d in table["index_date"]]
    keys = [
        (s, (y - b) // band_width, r, y)
        for s, b, r, y in zip(table["sex"], table["birth_year"], table["region"], year, strict=True)
    ]
    count = Counter(keys)
    return sum(count[key] < k for key in keys) / len(keys)


def _score(tid: str, fn, expected: list, cases: list[dict]) -> float:
    return KIT.score(tid, cases, expected, KIT.outputs(fn, cases)).fraction


def test_function_tasks_reference_right_naive_wrong(data):
    ref = _labs(data, KIT.source())
    naive = _labs(data, KIT.variant(NAIVE)).checked
    cases = KIT.cases("id_check", seed=11)
    expected = [id_check_char(str(c["first17"])) for c in cases]
    assert _score("id_check", ref.checked["id_check"], expected, cases) == 1.0
    assert _score("id_check", naive["id_check"], expected, cases) <= 0.2
    cases = KIT.cases("suppressed", seed=11)
    toy = ref["toy_patients"]
    expected = [_independent_suppressed(toy(c["seed"]), c["band_width"], c["k"]) for c in cases]
    assert _score("suppressed", ref.checked["suppressed"], expected, cases) == 1.0
    assert _score("suppressed", naive["suppressed"], expected, cases) <= 0.1


def test_released_table_is_5_anonymous_and_raw_is_not(data):
    ref = _labs(data, KIT.source())
    patients = ref["patients"]
    released, qi = ref.args("k_anon")
    k = KIT.tasks["k_anon"].params["k"]
    assert set(qi) == {"sex", "age_band", "region", "index_year"}
    assert released.groupby(qi).size().min() >= k
    assert not {"patient_id", "birth_year", "index_date"} & set(released.columns)
    assert len(released) >= 0.9 * len(patients)  # generalised, not emptied
    raw, qi = _labs(data, KIT.variant(NAIVE)).args("k_anon")
    assert raw.groupby(qi).size().min() < k
    unique = patients.groupby(["sex", "birth_year", "region", "index_date"]).size()
    assert ref.checked["unique_share"] == pytest.approx((unique == 1).sum() / len(patients))


@pytest.mark.slow
def test_naive_notebook_fails_the_public_checks(data, tmp_path):
    public = tmp_path / "public"
    public.mkdir()
    (public / "ehr").symlink_to(data / "ehr" / "public" / "ehr")
    (public / "notes").symlink_to(data / "notes1" / "public" / "notes")
    run = KIT.papermill(KIT.variant(NAIVE), public, tmp_path / "lab")
    # unique_share is a value task: its public check sees only type and range
    assert run.failed == {"id_check", "deid", "k_anon", "suppressed"}, run.verdicts


@pytest.mark.slow
def test_grader_gives_the_reference_full_marks_and_naive_answers_almost_none(tmp_path, data_key):
    """End to end: nbgrader release, two submissions, graded in the bubblewrap sandbox, the
    de-identifier scored on the hidden notes by the trusted scorer."""
    generate("notes", tmp_path / "data", n=600, seed=4, secret=data_key)
    generate("ehr", tmp_path / "data", n=2000, seed=0, secret=data_key)
    graded = KIT.grade(
        tmp_path, tmp_path / "data", {"honest": KIT.source(), "naive": KIT.variant(NAIVE)}
    )
    KIT.assert_full_marks(graded["honest"])
    KIT.assert_at_most(graded["naive"], dict.fromkeys(KIT.tasks, 0.35))
