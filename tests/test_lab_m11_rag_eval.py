"""Lab M11 (retrieval against hallucination, evaluating model answers): reference right, naive not.

- The reference tokenizer gives the public examples; splitting at spaces scores almost nothing
  on the grader's texts (Chinese has no spaces, English keeps its punctuation).
- The reference rubric reproduces the scores planted by the data generator (``kind`` of each
  recorded answer, hidden) on every dev and audit answer: the expected scores are not the
  reference echoing itself.
- The reference passes every public check; naive answers (split tokens, an answerer that never
  retrieves, a rubric that gives full marks) fail theirs (in-process, the real ``check``).
- End to end: an honest and a naive submission graded by ``medai grade``'s pipeline in
  bubblewrap sandboxes, the answers scored on the hidden test questions and audit scores.

The reference notebook itself runs in the notebook CI (tests/test_notebooks.py). The module
doubles as the lab's calibration script (it lives here because a lab folder is released)::

    .venv/bin/python tests/test_lab_m11_rag_eval.py --seeds 0 1 2 3 4 5 6 7 8 9
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

from medai.autograder import plain
from medai.autograder.batch import _draw
from medai.autograder.scoring import score_function
from medai.autograder.tasks import load_tasks
from medai.autograder.testing import hidden_model_scores, public_verdicts, with_answers

LAB = Path(__file__).resolve().parent.parent / "labs" / "m11-rag-eval"
NB = LAB / "m11-rag-eval.ipynb"
TASKS = load_tasks(LAB / "tasks.yaml")
N_QUESTIONS = 500  # the course's size (courses/demo-course.yaml); thresholds were set at it
RUBRIC = [t for t in TASKS.tasks if t.startswith("rubric_")]

NAIVE = {
    "tokenize_answer": "    return text.split()\n",
    # a language model without retrieval: the commonest training answer, no source, no refusal
    "qa_answer": (
        "common = pd.Series([q['answer'] for q in train if q['answerable']]).mode()[0]\n"
        "def answer(question):\n"
        "    return {'answer': common, 'citations': [], 'retrieved': []}\n"
    ),
    "rubric_answer": "    return dict.fromkeys(DIMENSIONS, 2)\n",
}
# QA variants for the calibration table (the qa cell only)
NAIVE_QA = {
    "no retrieval": NAIVE["qa_answer"],
    "never refuses": (
        "def answer(question):\n"
        "    retrieved = retrieve(question)\n"
        "    for s in sentences(passage_text[retrieved[0]]):\n"
        "        m = VALUE.search(s)\n"
        "        if m:\n"
        "            return {'answer': m.group(0), 'citations': [retrieved[0]], "
        "'retrieved': retrieved}\n"
        "    return {'answer': None, 'citations': [], 'retrieved': retrieved}\n"
    ),
}


def _load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from medai.synthetic.core import generate

    root = tmp_path_factory.mktemp("m11data")
    generate("kb", root, n=N_QUESTIONS, seed=3)
    return root


def _namespace(nb: nbformat.NotebookNode, data: Path, stop: str) -> dict:
    """The notebook's code cells run in-process up to (not including) cell ``stop``, with
    ``check`` doing nothing."""
    import os

    before = os.environ.get("MEDAI_DATA")
    os.environ["MEDAI_DATA"] = str(data / "public")
    ns: dict = {}
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for cell in nb.cells:
                gid = cell.metadata.get("nbgrader", {}).get("grade_id")
                if gid == stop:
                    break
                if cell.cell_type == "code":
                    exec(cell.source.replace("check, data_dir", "data_dir"), ns)
                    ns["check"] = lambda *args: None
    finally:
        if before is None:
            os.environ.pop("MEDAI_DATA", None)
        else:
            os.environ["MEDAI_DATA"] = before
    return ns


def _tokenizers() -> dict:
    import re

    import jieba

    fns = {}
    for name, nb in (("ref", nbformat.read(NB, as_version=4)), ("naive", with_answers(NB, NAIVE))):
        ns: dict = {"re": re, "jieba": jieba}
        with contextlib.redirect_stdout(io.StringIO()):
            for cell in nb.cells:
                if cell.metadata["nbgrader"]["grade_id"] in ("stopwords", "tokenize_answer"):
                    exec(cell.source, ns)
        fns[name] = ns["tokenize"]
    return fns


def test_tokenizer_reference_gives_the_examples_and_splitting_at_spaces_does_not():
    task = TASKS.tasks["tokenize"]
    rng = np.random.default_rng(11)
    cases = [{k: _draw(s, rng) for k, s in task.args.items()} for _ in range(40)]
    cases += [ex.args for ex in task.examples]
    fns = _tokenizers()
    for ex in task.examples:
        assert fns["ref"](**ex.args) == ex.expect
    ref = [plain.decode(plain.encode(fns["ref"](**c))) for c in cases]
    for c, toks in zip(cases, ref, strict=True):
        # the tokens are pieces of the lower-cased text, in order, and never punctuation
        text, at = c["text"].lower(), 0
        for t in toks:
            at = text.index(t, at) + len(t)
            assert any(ch.isalnum() for ch in t), t
        if any("\u4e00" <= ch <= "\u9fff" for ch in text):
            assert len(toks) >= 3, (text, toks)  # a Chinese sentence is several words
    naive = [plain.decode(plain.encode(fns["naive"](**c))) for c in cases]
    assert score_function(task, cases, ref, naive).fraction <= 0.2


def test_reference_rubric_reproduces_the_planted_scores(data):
    ns = _namespace(nbformat.read(NB, as_version=4), data, "rubric_applicability")
    recorded = _load(data / "public" / "kb" / "model_answers.jsonl")
    hidden = {r["id"]: r for r in _load(data / "hidden" / "kb" / "model_answer_scores.jsonl")}
    dims = ns["DIMENSIONS"]
    for rec in recorded:
        gold = {d: rec[d] for d in dims} if rec["part"] == "dev" else hidden[rec["id"]]
        got = ns["rubric"](rec)
        assert got == {d: gold[d] for d in dims}, (rec, gold.get("kind"), got)


@pytest.mark.slow
def test_reference_passes_its_public_checks_and_naive_answers_fail_them(data):
    assert public_verdicts(nbformat.read(NB, as_version=4), LAB, data) == dict.fromkeys(
        TASKS.tasks, "PASS"
    )
    assert public_verdicts(with_answers(NB, NAIVE), LAB, data) == dict.fromkeys(TASKS.tasks, "FAIL")


@pytest.mark.slow
def test_grader_gives_the_reference_full_marks_and_naive_answers_almost_none(data, tmp_path):
    """End to end: nbgrader release, two submissions, graded in the bubblewrap sandbox, the QA
    function scored on the hidden test questions and the rubric on the hidden audit scores."""
    from medai.autograder.batch import grade_lab
    from medai.autograder.policy import Policy
    from medai.autograder.sandbox import BubblewrapBackend
    from medai.autograder.testing import make_course, solved, submit

    course = make_course(tmp_path / "course", LAB, "m11-rag-eval")
    release = nbformat.read(course / "release/m11-rag-eval/m11-rag-eval.ipynb", as_version=4)
    name = "m11-rag-eval.ipynb"
    submit(
        course, "m11-rag-eval", "honest", {name: solved(release, nbformat.read(NB, as_version=4))}
    )
    submit(course, "m11-rag-eval", "naive", {name: solved(release, with_answers(NB, NAIVE))})
    policy = Policy.model_validate(
        {"limits": {"wall_s": 150, "cpu_s": 100, "memory_mb": 2048, "scratch_mb": 128}}
    )
    summary = grade_lab(
        course,
        "m11-rag-eval",
        backend=BubblewrapBackend(),
        policy=policy,
        data_root=data,
        workers=2,
        progress=False,
    )
    results = {r["student"]: r for r in summary.graded}
    honest, naive = results["honest"], results["naive"]
    assert honest["status"] == "graded", honest["messages"]
    for tid in TASKS.tasks:
        assert honest["tasks"][tid]["score"] == honest["tasks"][tid]["max"], honest["tasks"][tid]
        assert naive["tasks"][tid]["score"] <= 0.2 * naive["tasks"][tid]["max"], naive["tasks"][tid]


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    ap = argparse.ArgumentParser(description="Score lab m11's reference and naive answers.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n", type=int, default=N_QUESTIONS)
    args = ap.parse_args()
    from sklearn.metrics import balanced_accuracy_score

    from medai.synthetic.core import generate

    metrics = [m.name for m in TASKS.tasks["qa"].metrics]
    print("| seed | answer | " + " | ".join(metrics) + " | rubric (lowest dimension) |")
    print("|---|---|" + "---|" * (len(metrics) + 1))
    for seed in args.seeds:
        root = Path(tempfile.mkdtemp(prefix=f"m11-{seed}-"))
        generate("kb", root, n=args.n, seed=seed)
        ns = _namespace(nbformat.read(NB, as_version=4), root, "rubric_applicability")
        audit = [r for r in _load(root / "public/kb/model_answers.jsonl") if r["part"] == "audit"]
        gold = {r["id"]: r for r in _load(root / "hidden/kb/model_answer_scores.jsonl")}
        rubric = min(
            balanced_accuracy_score(
                [gold[r["id"]][d] for r in audit], [ns["rubric"](r)[d] for r in audit]
            )
            for d in ns["DIMENSIONS"]
        )
        for name, answer in (("reference", None), *NAIVE_QA.items()):
            nb = with_answers(NB, {} if answer is None else {"qa_answer": answer})
            s = hidden_model_scores(nb, root, LAB, "qa")
            cells = " | ".join(f"{s[m]:.3f}" for m in metrics)
            shown = f"{rubric:.3f}" if answer is None else "—"
            print(f"| {seed} | {name} | {cells} | {shown} |", flush=True)


if __name__ == "__main__":
    main()
