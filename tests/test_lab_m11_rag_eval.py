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
import tempfile
from pathlib import Path

import pytest

from medai.testing.labkit import LabKit, generate, read_jsonl, run_cells

KIT = LabKit.of("m11-rag-eval")
TASKS = KIT.tasks
N_QUESTIONS = 500  # the course's size (courses/demo-course.yaml); thresholds were set at it
RUBRIC = [t for t in TASKS if t.startswith("rubric_")]

NAIVE = KIT.naive  # by answer cell: medai/testing/labs/m11-rag-eval.yaml
NAIVE_QA = KIT.variants  # QA variants for the calibration table (the qa cell only)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return generate("kb", tmp_path_factory.mktemp("m11data"), n=N_QUESTIONS, seed=3)


def _namespace(nb, data: Path, stop: str) -> dict:
    """The notebook's code cells run in-process up to (not including) cell ``stop``."""
    return run_cells(nb, data=data, until=stop).ns


def _tokenizers() -> dict:
    import re

    import jieba

    fns = {}
    for name, nb in (("ref", KIT.source()), ("naive", KIT.variant(NAIVE))):
        ns = run_cells(nb, only={"stopwords", "tokenize_answer"}, ns={"re": re, "jieba": jieba}).ns
        fns[name] = ns["tokenize"]
    return fns


def test_tokenizer_reference_gives_the_examples_and_splitting_at_spaces_does_not():
    task = TASKS["tokenize"]
    cases = KIT.cases("tokenize", 40, seed=11, hidden=False)
    fns = _tokenizers()
    for ex in task.examples:
        assert fns["ref"](**ex.args) == ex.expect
    ref = KIT.outputs(fns["ref"], cases)
    for c, toks in zip(cases, ref, strict=True):
        # the tokens are pieces of the lower-cased text, in order, and never punctuation
        text, at = c["text"].lower(), 0
        for t in toks:
            at = text.index(t, at) + len(t)
            assert any(ch.isalnum() for ch in t), t
        if any("\u4e00" <= ch <= "\u9fff" for ch in text):
            assert len(toks) >= 3, (text, toks)  # a Chinese sentence is several words
    naive = KIT.outputs(fns["naive"], cases)
    assert KIT.score("tokenize", cases, ref, naive).fraction <= 0.2


def test_reference_rubric_reproduces_the_planted_scores(data):
    ns = _namespace(KIT.source(), data, "rubric_applicability")
    recorded = read_jsonl(data / "public" / "kb" / "model_answers.jsonl")
    hidden = {r["id"]: r for r in read_jsonl(data / "hidden" / "kb" / "model_answer_scores.jsonl")}
    dims = ns["DIMENSIONS"]
    for rec in recorded:
        gold = {d: rec[d] for d in dims} if rec["part"] == "dev" else hidden[rec["id"]]
        got = ns["rubric"](rec)
        assert got == {d: gold[d] for d in dims}, (rec, gold.get("kind"), got)


@pytest.mark.slow
def test_reference_passes_its_public_checks_and_naive_answers_fail_them(data):
    assert KIT.public_verdicts(KIT.source(), data) == dict.fromkeys(TASKS, "PASS")
    assert KIT.public_verdicts(KIT.variant(NAIVE), data) == dict.fromkeys(TASKS, "FAIL")


@pytest.mark.slow
def test_grader_gives_the_reference_full_marks_and_naive_answers_almost_none(data, tmp_path):
    """End to end: nbgrader release, two submissions, graded in the bubblewrap sandbox, the QA
    function scored on the hidden test questions and the rubric on the hidden audit scores."""
    graded = KIT.grade(tmp_path, data, {"honest": KIT.source(), "naive": KIT.variant(NAIVE)})
    KIT.assert_full_marks(graded["honest"])
    KIT.assert_at_most(graded["naive"], dict.fromkeys(TASKS, 0.2))


# --------------------------------------------------------------------------- calibration script


def main() -> None:
    ap = argparse.ArgumentParser(description="Score lab m11's reference and naive answers.")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n", type=int, default=N_QUESTIONS)
    args = ap.parse_args()
    from sklearn.metrics import balanced_accuracy_score

    metrics = [m.name for m in TASKS["qa"].metrics]
    print("| seed | answer | " + " | ".join(metrics) + " | rubric (lowest dimension) |")
    print("|---|---|" + "---|" * (len(metrics) + 1))
    for seed in args.seeds:
        root = generate("kb", Path(tempfile.mkdtemp(prefix=f"m11-{seed}-")), n=args.n, seed=seed)
        ns = _namespace(KIT.source(), root, "rubric_applicability")
        audit = [
            r for r in read_jsonl(root / "public/kb/model_answers.jsonl") if r["part"] == "audit"
        ]
        gold = {r["id"]: r for r in read_jsonl(root / "hidden/kb/model_answer_scores.jsonl")}
        rubric = min(
            balanced_accuracy_score(
                [gold[r["id"]][d] for r in audit], [ns["rubric"](r)[d] for r in audit]
            )
            for d in ns["DIMENSIONS"]
        )
        for name, answer in (("reference", None), *NAIVE_QA.items()):
            nb = KIT.variant(answer)
            s = KIT.hidden_model_scores(nb, root, "qa")
            cells = " | ".join(f"{s[m]:.3f}" for m in metrics)
            shown = f"{rubric:.3f}" if answer is None else "—"
            print(f"| {seed} | {name} | {cells} | {shown} |", flush=True)


if __name__ == "__main__":
    main()
