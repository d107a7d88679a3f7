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

import contextlib
import io
import json
import re
from collections import Counter
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from medai.autograder import plain
from medai.autograder.batch import _draw, hidden_cases
from medai.autograder.scoring import metric_fraction, score_function
from medai.autograder.tasks import FunctionTask
from medai.autograder.testing import SOLUTION_REGION
from medai.synthetic.core import generate
from medai.synthetic.notes import id_check_char, score_spans

LAB = Path(__file__).resolve().parent.parent / "labs" / "m1-deid"
NB = LAB / "m1-deid.ipynb"
SPEC = yaml.safe_load((LAB / "tasks.yaml").read_text(encoding="utf-8"))["tasks"]

NAIVE = {
    "id_check_answer": "    return str(sum(int(d) for d in first17) % 10)  # digit sum\n",
    "deid_answer": (
        "def make_detector(train):\n"
        "    def detect(notes):  # mask every number\n"
        "        return [[{'start': m.start(), 'end': m.end(), 'label': 'X'}\n"
        "                 for m in re.finditer(r'\\d+', n['text'])] for n in notes]\n"
        "    return detect\n"
    ),
    "unique_share_answer": "unique_share = 0.0\n",
    "k_anon_answer": (  # renamed columns, nothing generalised or suppressed
        "released = patients.assign(age_band=patients['birth_year'].astype(str),\n"
        "    index_year=patients['index_date'])[QUASI_IDENTIFIERS + ['smoking_status']]\n"
    ),
    "suppressed_answer": (  # nothing generalised: the share of unique rows
        "    size = table.groupby(['sex', 'birth_year', 'region', 'index_date'])['sex']"
        ".transform('size')\n"
        "    return float((size < k).mean())\n"
    ),
}


def _variant(replace: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(NB, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in replace:
            # the deid cell has two solution regions: only the first (the detector) is replaced;
            # the second, inside deidentify, keeps calling make_detector
            cell.source = SOLUTION_REGION.sub(
                lambda _m, code=replace[gid]: code,
                cell.source,
                count=1 if gid == "deid_answer" else 0,
            )
    return nb


def _load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory, data_key) -> Path:
    root = tmp_path_factory.mktemp("m1data")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        generate("ehr", root / "ehr", n=2000, seed=0, secret=data_key)
        for seed in (1, 2, 3):  # hidden test notes drawn with the key, as on a hub
            generate("notes", root / f"notes{seed}", n=600, seed=seed, secret=data_key)
    return root


def _namespace(nb: nbformat.NotebookNode, train: list[dict], patients: pd.DataFrame) -> dict:
    """Run the lab's cells in-process (no data loading); return the checked objects."""
    captured: dict = {}
    ns: dict = {
        "check": lambda tid, value, *extra: captured.__setitem__(tid, (value, *extra)),
        "train_notes": train,
        "patients": patients,
        "score_spans": score_spans,
    }
    exec("import json, re\nimport numpy as np\nimport pandas as pd", ns)
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if cell.cell_type == "code" and gid not in {"parameters", "setup"}:
                exec(cell.source, ns)
    assert set(captured) == set(SPEC)
    return {**captured, "ns": ns}


def _labs(data: Path, nb: nbformat.NotebookNode, seed: int = 1) -> dict:
    notes = data / f"notes{seed}" / "public" / "notes"
    patients = pd.read_csv(data / "ehr" / "public" / "ehr" / "patients.csv")
    return _namespace(nb, _load(notes / "train.jsonl"), patients)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reference_and_naive_on_hidden_notes(data, seed):
    notes = data / f"notes{seed}"
    test = _load(notes / "public" / "notes" / "test.jsonl")
    gold = [r["spans"] for r in _load(notes / "hidden" / "notes" / "test_spans.jsonl")]
    metrics = {m["name"]: m for m in SPEC["deid"]["metrics"]}
    for variant, want in ((nbformat.read(NB, as_version=4), 1.0), (_variant(NAIVE), 0.0)):
        detect = _labs(data, variant, seed)["deid"][0]
        s = score_spans(gold, detect(test))
        got = {"span_recall": s["recall"], "span_precision": s["precision"]}
        fractions = [
            metric_fraction(got[n], m["zero_marks_at"], m["full_marks_at"])
            for n, m in metrics.items()
        ]
        assert fractions == [want, want], got


def _cases(tid: str, n: int = 40) -> list[dict]:
    task = FunctionTask.model_validate(SPEC[tid])
    rng = np.random.default_rng([11, len(tid)])
    cases = [{k: _draw(s, rng) for k, s in task.args.items()} for _ in range(n)]
    cell = next(
        c
        for c in nbformat.read(NB, as_version=4).cells
        if c.metadata["nbgrader"]["grade_id"] == tid
    )
    return cases + hidden_cases(cell.source) + [ex.args for ex in task.examples]


def _independent_suppressed(table: pd.DataFrame, band_width: int, k: int) -> float:
    year = [int(d[:4]) for d in table["index_date"]]
    keys = [
        (s, (y - b) // band_width, r, y)
        for s, b, r, y in zip(table["sex"], table["birth_year"], table["region"], year, strict=True)
    ]
    count = Counter(keys)
    return sum(count[key] < k for key in keys) / len(keys)


def _score(tid: str, fn, expected: list, cases: list[dict]) -> float:
    got = [plain.decode(plain.encode(fn(**c))) for c in cases]
    task = FunctionTask.model_validate(SPEC[tid])
    return score_function(task, cases, expected, got).fraction


def test_function_tasks_reference_right_naive_wrong(data):
    ref = _labs(data, nbformat.read(NB, as_version=4))
    naive = _labs(data, _variant(NAIVE))
    cases = _cases("id_check")
    expected = [id_check_char(str(c["first17"])) for c in cases]
    assert _score("id_check", ref["id_check"][0], expected, cases) == 1.0
    assert _score("id_check", naive["id_check"][0], expected, cases) <= 0.2
    cases = _cases("suppressed")
    toy = ref["ns"]["toy_patients"]
    expected = [_independent_suppressed(toy(c["seed"]), c["band_width"], c["k"]) for c in cases]
    assert _score("suppressed", ref["suppressed"][0], expected, cases) == 1.0
    assert _score("suppressed", naive["suppressed"][0], expected, cases) <= 0.1


def test_released_table_is_5_anonymous_and_raw_is_not(data):
    ref = _labs(data, nbformat.read(NB, as_version=4))
    patients = ref["ns"]["patients"]
    released, qi = ref["k_anon"]
    k = SPEC["k_anon"]["params"]["k"]
    assert set(qi) == {"sex", "age_band", "region", "index_year"}
    assert released.groupby(qi).size().min() >= k
    assert not {"patient_id", "birth_year", "index_date"} & set(released.columns)
    assert len(released) >= 0.9 * len(patients)  # generalised, not emptied
    raw, qi = _labs(data, _variant(NAIVE))["k_anon"]
    assert raw.groupby(qi).size().min() < k
    unique = patients.groupby(["sex", "birth_year", "region", "index_date"]).size()
    assert ref["unique_share"][0] == pytest.approx((unique == 1).sum() / len(patients))


@pytest.mark.slow
def test_naive_notebook_fails_the_public_checks(data, tmp_path, monkeypatch):
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    public = tmp_path / "public"
    public.mkdir()
    (public / "ehr").symlink_to(data / "ehr" / "public" / "ehr")
    (public / "notes").symlink_to(data / "notes1" / "public" / "notes")
    monkeypatch.setenv("MEDAI_DATA", str(public))
    src = tmp_path / "naive.ipynb"
    nbformat.write(_variant(NAIVE), src)
    (tmp_path / "tasks.yaml").write_text((LAB / "tasks.yaml").read_text(encoding="utf-8"))
    out = tmp_path / "out.ipynb"
    with pytest.raises(PapermillExecutionError):  # raised after all cells ran (allow_errors)
        pm.execute_notebook(
            str(src),
            str(out),
            parameters=yaml.safe_load((LAB / "ci.yaml").read_text()),
            kernel_name="python3",
            cwd=str(tmp_path),
            progress_bar=False,
            allow_errors=True,
            execution_timeout=60,
        )
    failed = set()
    for cell in nbformat.read(out, as_version=4).cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error" and o["ename"] == "CheckFailed":
                failed |= set(re.findall(r"FAIL \[([^\]]+)\]", o["evalue"]))
    # unique_share is a value task: its public check sees only type and range
    assert failed == {"id_check", "deid", "k_anon", "suppressed"}


@pytest.mark.slow
def test_grader_gives_the_reference_full_marks_and_naive_answers_almost_none(tmp_path, data_key):
    """End to end: nbgrader release, two submissions, graded in the bubblewrap sandbox, the
    de-identifier scored on the hidden notes by the trusted scorer."""
    from medai.autograder.batch import grade_lab
    from medai.autograder.policy import Policy
    from medai.autograder.sandbox import BubblewrapBackend
    from medai.autograder.testing import make_course, solved, submit

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        generate("notes", tmp_path / "data", n=600, seed=4, secret=data_key)
        generate("ehr", tmp_path / "data", n=2000, seed=0, secret=data_key)
    course = make_course(tmp_path / "course", LAB, "m1-deid")
    release = nbformat.read(course / "release/m1-deid/m1-deid.ipynb", as_version=4)
    name = "m1-deid.ipynb"
    submit(course, "m1-deid", "honest", {name: solved(release, nbformat.read(NB, as_version=4))})
    submit(course, "m1-deid", "naive", {name: solved(release, _variant(NAIVE))})
    policy = Policy.model_validate(
        {"limits": {"wall_s": 60, "cpu_s": 50, "memory_mb": 2048, "scratch_mb": 128}}
    )
    summary = grade_lab(
        course,
        "m1-deid",
        backend=BubblewrapBackend(),
        policy=policy,
        data_root=tmp_path / "data",
        workers=2,
        progress=False,
    )
    results = {r["student"]: r for r in summary.graded}
    honest, naive = results["honest"], results["naive"]
    assert honest["status"] == "graded", honest["messages"]
    for tid in SPEC:
        assert honest["tasks"][tid]["score"] == honest["tasks"][tid]["max"], honest["tasks"][tid]
        assert naive["tasks"][tid]["score"] <= 0.35 * naive["tasks"][tid]["max"], naive["tasks"][
            tid
        ]
