"""The ``model`` and ``property`` task kinds: metrics, properties, loaders, task files, checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medai.autograder import GradingError, plain
from medai.autograder.metrics import METRICS, MetricError, compute
from medai.autograder.modeldata import OutputError, align, load_source, validate_output
from medai.autograder.properties import PROPERTIES, evaluate, to_plain_args
from medai.autograder.scoring import ModelTruth, score_model, score_property
from medai.autograder.tasks import DataSource, OutputSpec, parse_tasks

RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------- metrics


def _binary_case(n: int = 300):
    y = RNG.integers(0, 2, n)
    p = np.clip(0.5 * y + RNG.uniform(0, 0.6, n), 0, 1)
    return y, np.stack([1 - p, p], axis=1)


def test_classification_metrics_match_sklearn():
    from sklearn import metrics as skm

    y, proba = _binary_case()
    assert compute("auroc", y, proba) == pytest.approx(skm.roc_auc_score(y, proba[:, 1]))
    assert compute("auroc", y, proba[:, 1]) == pytest.approx(skm.roc_auc_score(y, proba[:, 1]))
    assert compute("brier", y, proba) == pytest.approx(skm.brier_score_loss(y, proba[:, 1]))
    yk = RNG.integers(0, 4, 400)
    pk = RNG.dirichlet(np.ones(4), 400)
    pk[np.arange(400), yk] += 0.5
    pk /= pk.sum(axis=1, keepdims=True)
    want = skm.roc_auc_score(yk, pk, multi_class="ovr", average="macro")
    assert compute("macro_auroc", yk, pk) == pytest.approx(want)
    assert compute("accuracy", yk, pk) == pytest.approx(skm.accuracy_score(yk, pk.argmax(1)))
    assert compute("balanced_accuracy", yk, pk.argmax(1)) == pytest.approx(
        skm.balanced_accuracy_score(yk, pk.argmax(1))
    )
    # a class absent from the labels: mean of one-vs-rest AUROC over the classes present
    sub = yk != 3
    per = [skm.roc_auc_score(yk[sub] == c, pk[sub][:, c]) for c in range(3)]
    assert compute("macro_auroc", yk[sub], pk[sub]) == pytest.approx(np.mean(per))
    with pytest.raises(MetricError, match="one class"):
        compute("auroc", np.zeros(5, int), np.full(5, 0.3))


def test_ece_by_hand_and_lower_is_better():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.05, 0.95, 0.55, 0.45, 1.0])
    # bins: 0 -> {0.05}: |0 - .05|; 9 -> {0.95, 1.0}: |1 - .975|; 5 -> {.55}: |1-.55|; 4 -> {.45}
    want = (0.05 + 2 * 0.025 + 0.45 + 0.45) / 5
    assert compute("ece", y, p) == pytest.approx(want)
    y, proba = _binary_case(2000)
    calibrated = RNG.uniform(0, 1, 2000)
    y_cal = (RNG.uniform(0, 1, 2000) < calibrated).astype(int)
    assert compute("ece", y_cal, calibrated) < compute("ece", y_cal, calibrated**3)
    assert METRICS["ece"].higher_is_better is False


def test_c_index_higher_risk_means_earlier_event():
    from lifelines.utils import concordance_index

    t = RNG.exponential(10, 200)
    e = RNG.integers(0, 2, 200)
    risk = -t + RNG.normal(0, 3, 200)
    labels = np.stack([t, e], axis=1)
    c = compute("c_index", labels, risk)
    assert c == pytest.approx(concordance_index(t, -risk, e))
    assert c > 0.7
    assert compute("c_index", labels, -risk) == pytest.approx(1 - c, abs=1e-9)
    with pytest.raises(MetricError, match="two columns"):
        compute("c_index", t, risk)


def test_dice_and_lesion_sensitivity_by_hand():
    t = np.zeros((3, 6, 6), bool)
    p = np.zeros((3, 6, 6), bool)
    t[0, 0:2, 0:2] = True  # 4 px
    p[0, 0:2, 0:1] = True  # 2 px inside: dice 2*2/6
    t[1, 4:6, 4:6] = True
    t[1, 0, 5] = True  # second lesion in image 1, missed
    p[1, 5, 5] = True  # touches the first lesion
    # image 2: both empty -> dice 1
    d1 = 2 * 2 / 6
    d2 = 2 * 1 / (5 + 1)
    assert compute("dice", t, p) == pytest.approx((d1 + d2 + 1) / 3)
    assert compute("lesion_sensitivity", t, p) == pytest.approx(2 / 3)
    assert compute("lesion_sensitivity", np.zeros((1, 3, 3)), np.zeros((1, 3, 3), bool)) == 1.0
    # painting everything touches every lesion but finds none (IoU 4/36 < 0.2)
    assert compute("lesion_sensitivity", t, np.ones_like(t)) == 0.0


def test_span_metrics_mirror_the_notes_scorer():
    from medai.synthetic.notes import score_spans

    gold = [[{"start": 0, "end": 4, "label": "NAME"}, {"start": 10, "end": 14, "label": "DATE"}]]
    pred = [[{"start": 0, "end": 4, "label": "NAME"}, {"start": 10, "end": 12, "label": "NAME"}]]
    ref = score_spans(gold, pred)
    assert compute("span_recall", gold, pred) == ref["recall"] == 0.5  # half-masked date leaks
    assert compute("span_precision", gold, pred) == ref["precision"] == 1.0
    # with labels: the NAME span over a date is wrong
    assert compute("span_precision", gold, pred, match_label=True) == 0.5
    whole = [[{"start": 0, "end": 100, "label": "NAME"}]]  # one huge span: recall 1, precision 0
    assert compute("span_recall", gold, whole) == 1.0
    assert compute("span_precision", gold, whole) == 0.0


def test_mae_matches_sklearn():
    from sklearn.metrics import mean_absolute_error

    a, b = RNG.normal(size=50), RNG.normal(size=50)
    assert compute("mae", a, b) == pytest.approx(mean_absolute_error(a, b))


# --------------------------------------------------------------------------- predictions


def test_validate_output_canonical_forms_and_errors():
    proba = OutputSpec(type="proba", classes=2)
    assert validate_output(np.array([0.2, 0.9]), proba, 2).shape == (2, 2)
    with pytest.raises(OutputError, match="shape"):
        validate_output(np.zeros((3, 3)), proba, 3)
    with pytest.raises(OutputError, match="NaN"):
        validate_output(np.array([[0.5, np.nan]]), proba, 1)
    with pytest.raises(OutputError, match="sum to 1"):
        validate_output(np.array([[0.9, 0.9]]), proba, 1)
    with pytest.raises(OutputError, match="numpy array"):
        validate_output("0.5", OutputSpec(type="score"), 1)
    with pytest.raises(OutputError, match="dtype"):
        validate_output(np.array(["a"]), OutputSpec(type="score"), 1)
    lab = OutputSpec(type="label", classes=3)
    assert validate_output(np.array([0.0, 2.0]), lab, 2).dtype.kind == "i"
    with pytest.raises(OutputError, match="0..2"):
        validate_output(np.array([3]), lab, 1)
    mask = OutputSpec(type="mask")
    with pytest.raises(OutputError, match="threshold"):
        validate_output(np.full((1, 2, 2), 0.7), mask, 1)
    with pytest.raises(OutputError, match="pixels"):
        validate_output(np.zeros((1, 2, 2)), mask, 1, (3, 3))
    spans = OutputSpec(type="spans")
    with pytest.raises(OutputError, match="integer 'start'"):
        validate_output([[{"start": "0", "end": 3}]], spans, 1)
    with pytest.raises(OutputError, match="expected 2"):
        validate_output([[]], spans, 2)


def test_score_model_linear_in_both_directions_and_malformed_is_zero():
    task = parse_tasks(
        {
            "lab": "t",
            "tasks": {
                "m": {
                    "kind": "model",
                    "dataset": "d",
                    "dev": {
                        "inputs": {"npz": "a.npz", "key": "x"},
                        "labels": {"npz": "a.npz", "key": "y"},
                    },
                    "test": {
                        "inputs": {"npz": "b.npz", "key": "x"},
                        "labels": {"hidden": True, "npz": "c.npz", "key": "y"},
                    },
                    "output": {"type": "proba", "classes": 2},
                    "metrics": [
                        {"name": "accuracy", "full_marks_at": 1.0, "zero_marks_at": 0.5},
                        {"name": "brier", "full_marks_at": 0.0, "zero_marks_at": 0.5},
                    ],
                }
            },
        }
    ).tasks["m"]
    y = np.array([0, 1, 1, 0])
    truth = ModelTruth(y, 4)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    assert score_model(task, perfect, truth).fraction == 1.0
    half = np.full((4, 2), 0.5)  # accuracy 0.5 (argmax ties -> 0) -> 0; brier 0.25 -> 0.5
    s = score_model(task, half, truth)
    assert s.fraction == pytest.approx((0 + 0.5) / 2)
    for bad in (np.zeros((3, 2)), np.array([[np.nan, 1.0]] * 4), [0.1, 0.2, 0.3, 0.4], "x"):
        s = score_model(task, bad, truth)
        assert s.fraction == 0.0 and "malformed" in s.message


# --------------------------------------------------------------------------- loaders


def test_loaders_align_by_id_and_refuse_hidden(tmp_path):
    pub, hid = tmp_path / "public", tmp_path / "hidden"
    pub.mkdir()
    hid.mkdir()
    np.savez(pub / "x.npz", images=np.arange(12).reshape(3, 2, 2), id=np.array([7, 8, 9]))
    np.savez(hid / "y.npz", labels=np.array([1, 0, 1]), id=np.array([9, 7, 8]))
    pd.DataFrame(
        {
            "pid": ["a", "b", "c"],
            "split": ["dev", "dev", "test"],
            "age": [1, 2, 3],
            "event": [1, 0, 1],
        }
    ).to_csv(pub / "t.csv", index=False)
    (pub / "n.jsonl").write_text(
        "\n".join(json.dumps({"id": f"n{i}", "text": "x", "spans": [i]}) for i in range(2)) + "\n"
    )
    inputs = load_source(DataSource(npz="x.npz", key="images"), pub)
    hidden = DataSource(hidden=True, npz="y.npz", key="labels")
    with pytest.raises(PermissionError):
        load_source(hidden, pub)
    labels = load_source(hidden, pub, hid)
    assert align(inputs, labels, "t").tolist() == [0, 1, 1]  # ids 7, 8, 9
    np.savez(pub / "f.npz", x=np.arange(4), fold=np.array([0, 1, 0, 2]), id=np.arange(4) + 10)
    sub = load_source(DataSource(npz="f.npz", key="x", where={"fold": [0, 2]}), pub)
    assert sub.value.tolist() == [0, 2, 3] and sub.ids == ["10", "12", "13"]
    with pytest.raises(KeyError, match="no array 'site'"):
        load_source(DataSource(npz="f.npz", key="x", where={"site": 1}), pub)
    df = load_source(
        DataSource(csv="t.csv", where={"split": "dev"}, id_column="pid", drop=["event"]), pub
    )
    assert list(df.value.columns) == ["pid", "split", "age"] and df.ids == ["a", "b"]
    col = load_source(DataSource(csv="t.csv", id_column="pid", columns=["age", "event"]), pub)
    assert align(df, col, "t").tolist() == [[1, 1], [2, 0]]
    ids = load_source(
        DataSource.model_validate(
            {"ids": {"csv": "t.csv", "column": "pid", "where": {"split": ["test"]}}}
        ),
        pub,
    )
    assert ids.value == ["c"]
    notes = load_source(DataSource(jsonl="n.jsonl", drop=["spans"]), pub)
    assert notes.value[0] == {"id": "n0", "text": "x"}
    assert load_source(DataSource(jsonl="n.jsonl", field="spans"), pub).value == [[0], [1]]


# --------------------------------------------------------------------------- task files


@pytest.mark.parametrize(
    ("task", "needle"),
    [
        (
            {
                "output": {"type": "score"},
                "metrics": [{"name": "dice", "full_marks_at": 1, "zero_marks_at": 0}],
            },
            "needs a mask",
        ),
        ({"metrics": [{"name": "nope", "full_marks_at": 1, "zero_marks_at": 0}]}, "unknown metric"),
        (
            {
                "test": {
                    "inputs": {"npz": "b.npz", "key": "x"},
                    "labels": {"npz": "c.npz", "key": "y"},
                }
            },
            "hidden: true",
        ),
        (
            {
                "test": {
                    "inputs": {"hidden": True, "npz": "b.npz", "key": "x"},
                    "labels": {"hidden": True, "npz": "c.npz", "key": "y"},
                }
            },
            "inputs must be public",
        ),
        (
            {
                "dev": {
                    "inputs": {"npz": "../x.npz", "key": "x"},
                    "labels": {"npz": "a.npz", "key": "y"},
                }
            },
            "dev.inputs.npz",
        ),
        (
            {"dev": {"inputs": {"npz": "a.npz"}, "labels": {"npz": "a.npz", "key": "y"}}},
            "needs `key`",
        ),
        ({"output": {"type": "proba"}}, "needs `classes`"),
    ],
)
def test_bad_model_task_names_task_and_key(task, needle):
    base = {
        "kind": "model",
        "dataset": "d",
        "dev": {"inputs": {"npz": "a.npz", "key": "x"}, "labels": {"npz": "a.npz", "key": "y"}},
        "test": {
            "inputs": {"npz": "b.npz", "key": "x"},
            "labels": {"hidden": True, "npz": "c.npz", "key": "y"},
        },
        "output": {"type": "proba", "classes": 2},
        "metrics": [{"name": "auroc", "full_marks_at": 0.9, "zero_marks_at": 0.6}],
    }
    with pytest.raises(GradingError) as err:
        parse_tasks({"lab": "t", "tasks": {"my_model": {**base, **task}}})
    assert "tasks.my_model" in str(err.value)
    assert needle in str(err.value)


def test_bad_property_task_names_the_param():
    with pytest.raises(GradingError, match=r"tasks\.hr.*params\.\(all\).*tol"):
        parse_tasks(
            {
                "lab": "t",
                "tasks": {
                    "hr": {"kind": "property", "property": "within", "params": {"target": 1}}
                },
            }
        )
    with pytest.raises(GradingError, match="params.k"):
        parse_tasks(
            {
                "lab": "t",
                "tasks": {
                    "ka": {"kind": "property", "property": "k_anonymous", "params": {"k": 1}}
                },
            }
        )
    with pytest.raises(GradingError, match="unknown property"):
        parse_tasks({"lab": "t", "tasks": {"p": {"kind": "property", "property": "nope"}}})


# --------------------------------------------------------------------------- properties


def _prop(name, *values, **params):
    """As graded: the kernel's conversion, the plain round trip, then the property."""
    got = plain.decode(plain.encode(to_plain_args(values)))
    return evaluate(name, got, params)


def test_disjoint():
    assert _prop("disjoint", ["a", "b"], pd.Index(["c"]))[0] == 1.0
    frac, msg = _prop("disjoint", np.array([1, 2, 3]), pd.Series([3.0, 4.0]))
    assert frac == 0.0 and "1 id(s)" in msg
    assert _prop("disjoint", [], [])[0] == 0.0  # empty sets are not evidence of a split
    assert _prop("disjoint", ["a"])[0] == 0.0
    assert _prop("disjoint", [["a"]], ["b"])[0] == 0.0  # nested values are not ids


def test_contains_all():
    exp = ["diabetes", "hypertension"]
    assert _prop("contains_all", ["Diabetes", "age", "hypertension"], expected=exp)[0] == 1.0
    assert _prop("contains_all", ["diabetes"], expected=exp)[0] == 0.5
    assert _prop("contains_all", ["Diabetes"], expected=exp, ignore_case=False)[0] == 0.0
    many = [f"f{i}" for i in range(20)] + exp
    assert _prop("contains_all", many, expected=exp, max_items=8)[0] == 0.0
    assert _prop("contains_all", "diabetes hypertension", expected=exp)[0] == 0.0


def test_k_anonymous():
    df = pd.DataFrame({"sex": ["F"] * 5 + ["M"] * 5, "band": [1] * 10, "x": range(10)})
    assert _prop("k_anonymous", df, ["sex", "band"], k=5)[0] == 1.0
    frac, msg = _prop("k_anonymous", df, ["sex", "band", "x"], k=5)
    assert frac == 0.0 and "fewer than k=5" in msg
    # the grader's own quasi-identifiers cannot be dropped by the trainee
    assert _prop("k_anonymous", df, ["band"], k=5, quasi_identifiers=["sex", "x"])[0] == 0.0
    assert _prop("k_anonymous", df.iloc[:0], ["sex"], k=5)[0] == 0.0  # suppress-all is no answer
    assert _prop("k_anonymous", df, ["sex"], k=5, min_rows=20)[0] == 0.0
    assert _prop("k_anonymous", df, ["nope"], k=5)[0] == 0.0
    nan = pd.DataFrame({"sex": [None] * 5 + ["F"] * 5})
    assert _prop("k_anonymous", nan, ["sex"], k=5)[0] == 1.0


def test_within():
    assert _prop("within", 0.75, target=0.7, rel_tol=0.2)[0] == 1.0
    assert _prop("within", np.float64(0.5), target=0.7, rel_tol=0.2)[0] == 0.0
    assert _prop("within", 0.72, target=0.7, tol=0.01)[0] == 0.0
    assert _prop("within", True, target=1.0, tol=0.5)[0] == 0.0
    assert _prop("within", float("nan"), target=1.0, tol=0.5)[0] == 0.0
    assert _prop("within", "0.7", target=0.7, tol=0.5)[0] == 0.0


def test_forged_property_values_score_zero_with_a_reason():
    task = parse_tasks(
        {
            "lab": "t",
            "tasks": {"ka": {"kind": "property", "property": "k_anonymous", "params": {"k": 2}}},
        }
    ).tasks["ka"]
    for forged in ({"t": "dict"}, "all good", None, [{"sex": {"nested": 1}}], [[1, 2], ["sex"]]):
        s = score_property(task, forged)
        assert s.fraction == 0.0 and s.message
    assert set(PROPERTIES) == {"disjoint", "contains_all", "k_anonymous", "within"}


# --------------------------------------------------------------------------- metrics by group


def test_worst_group_mae_by_hand_and_groups_required():
    y = np.array([60.0, 70.0, 80.0, 90.0])
    p = np.array([61.0, 73.0, 80.0, 100.0])
    g = np.array(["I-II", "I-II", "V-VI", "V-VI"])
    assert compute("worst_group_mae", y, p, groups=g) == pytest.approx(5.0)  # (0 + 10) / 2
    assert compute("mae", y, p) == pytest.approx(3.5)
    with pytest.raises(MetricError, match="by group"):
        compute("worst_group_mae", y, p)
    with pytest.raises(MetricError, match="one group per case"):
        compute("worst_group_mae", y, p, groups=g[:3])
    from medai.autograder.metrics import by_group

    assert by_group("worst_group_mae", y, p, g) == "MAE by group: I-II 2.00, V-VI 5.00"
    assert by_group("mae", y, p, g) == ""


def test_equalized_odds_matches_fairlearn_and_expected_rates_by_hand():
    from fairlearn.metrics import equalized_odds_difference

    y = RNG.integers(0, 2, 400)
    d = (RNG.random(400) < 0.3 + 0.4 * y).astype(int)
    g = RNG.choice(["urban", "rural"], 400)
    want = equalized_odds_difference(y, d, sensitive_features=g)
    assert compute("equalized_odds_difference", y, d, groups=g) == pytest.approx(want)
    # expected outcomes: TPR_g = sum(d p) / sum(p), FPR_g = sum(d (1-p)) / sum(1-p)
    p = RNG.uniform(0.01, 0.6, 400)
    tpr = {k: (d[g == k] * p[g == k]).sum() / p[g == k].sum() for k in ("urban", "rural")}
    fpr = {
        k: (d[g == k] * (1 - p[g == k])).sum() / (1 - p[g == k]).sum() for k in ("urban", "rural")
    }
    gap = max(abs(tpr["urban"] - tpr["rural"]), abs(fpr["urban"] - fpr["rural"]))
    assert compute("equalized_odds_difference", p, d, groups=g) == pytest.approx(gap)
    ba = 0.5 * ((d * p).sum() / p.sum() + ((1 - d) * (1 - p)).sum() / (1 - p).sum())
    assert compute("balanced_accuracy", p, d) == pytest.approx(ba)
    # flagging everyone (or no one) is perfectly "fair" and useless: the pair of metrics says so
    ones = np.ones(400, dtype=int)
    assert compute("equalized_odds_difference", p, ones, groups=g) == 0.0
    assert compute("balanced_accuracy", p, ones) == pytest.approx(0.5)
    with pytest.raises(MetricError, match="probabilities"):
        compute("balanced_accuracy", p * 3, d)


def test_grouped_metric_needs_groups_in_both_splits_and_groups_are_public():
    base = {
        "kind": "model",
        "dataset": "d",
        "dev": {
            "inputs": {"npz": "a.npz", "key": "x"},
            "labels": {"npz": "a.npz", "key": "y"},
            "groups": {"npz": "a.npz", "key": "tone"},
        },
        "test": {
            "inputs": {"npz": "b.npz", "key": "x"},
            "labels": {"hidden": True, "npz": "c.npz", "key": "y"},
        },
        "output": {"type": "score"},
        "metrics": [{"name": "worst_group_mae", "full_marks_at": 5, "zero_marks_at": 10}],
    }
    with pytest.raises(GradingError, match="computed by group"):
        parse_tasks({"lab": "t", "tasks": {"m": base}})
    hidden = {**base["test"], "groups": {"hidden": True, "npz": "c.npz", "key": "tone"}}
    with pytest.raises(GradingError, match="groups must be public"):
        parse_tasks({"lab": "t", "tasks": {"m": {**base, "test": hidden}}})
    relabel = {**base["test"], "relabel": {"a": "b"}}
    with pytest.raises(GradingError, match="give `groups` too"):
        parse_tasks({"lab": "t", "tasks": {"m": {**base, "test": relabel}}})
    ok = {**base["test"], "groups": {"npz": "b.npz", "key": "tone"}}
    assert parse_tasks({"lab": "t", "tasks": {"m": {**base, "test": ok}}}).tasks["m"]


def test_groups_align_by_id_merge_and_reach_the_score_message(tmp_path):
    from medai.autograder.modeldata import load_groups
    from medai.autograder.tasks import Split

    pub = tmp_path / "public"
    pub.mkdir()
    np.savez(pub / "x.npz", x=np.arange(4.0), id=np.array([3, 1, 2, 0]))
    pd.DataFrame(
        {"pid": [0, 1, 2, 3], "region": ["urban", "rural", "under_resourced", "urban"]}
    ).to_csv(pub / "p.csv", index=False)
    split = Split.model_validate(
        {
            "inputs": {"npz": "x.npz", "key": "x"},
            "labels": {"npz": "x.npz", "key": "x"},
            "groups": {"csv": "p.csv", "id_column": "pid", "column": "region"},
            "relabel": {"under_resourced": "rural"},
        }
    )
    inputs = load_source(split.inputs, pub)
    assert load_groups(split, inputs, pub).tolist() == ["urban", "rural", "rural", "urban"]
    task = parse_tasks(
        {
            "lab": "t",
            "tasks": {
                "m": {
                    "kind": "model",
                    "dataset": "d",
                    "dev": split.model_dump(exclude_none=True),
                    "test": {
                        **split.model_dump(exclude_none=True),
                        "labels": {"hidden": True, "npz": "y.npz", "key": "y"},
                    },
                    "output": {"type": "score"},
                    "metrics": [
                        {"name": "worst_group_mae", "full_marks_at": 1, "zero_marks_at": 3}
                    ],
                }
            },
        }
    ).tasks["m"]
    truth = ModelTruth(np.zeros(4), 4, np.array(["urban", "rural", "rural", "urban"]))
    s = score_model(task, np.array([0.0, 2.0, 2.0, 0.0]), truth)
    assert s.fraction == pytest.approx(0.5)
    assert "MAE by group: rural 2.00, urban 0.00" in s.message


# --------------------------------------------------------------------------- answers


def _qa_labels():
    return [
        {"answerable": True, "answer": "140 mmHg", "passage_id": "htn"},
        {"answerable": True, "answer": "6.5%", "passage_id": "dm"},
        {"answerable": False, "answer": None, "passage_id": None},
        {"answerable": False, "answer": None, "passage_id": None},
    ]


def test_answer_metrics_by_hand():
    y = _qa_labels()
    pred = [
        {"answer": "140  MMHG.", "citations": ["htn"], "retrieved": ["htn", "x"]},  # right
        {"answer": "6.5%", "citations": ["a"], "retrieved": ["a", "b", "c", "d", "e", "dm"]},
        {"answer": None, "citations": [], "retrieved": ["x"]},  # abstains
        {"answer": "7 mmol/L", "citations": ["q"], "retrieved": ["x"]},  # hallucinates
    ]
    assert compute("recall_at_5", y, pred) == 0.5  # dm is 6th
    assert compute("correct_abstention", y, pred) == 0.5
    assert compute("cites_retrieved", y, pred) == pytest.approx(2 / 3)  # 'q' was not retrieved
    assert compute("answer_accuracy", y, pred) == 0.5  # the 6.5% cites the wrong passage
    silent = [{"answer": None, "citations": [], "retrieved": []}] * 4
    assert compute("cites_retrieved", y, silent) == 1.0  # nothing answered, nothing uncited ...
    assert compute("answer_accuracy", y, silent) == 0.0  # ... and nothing gained


def test_answers_output_validation():
    out = OutputSpec(type="answers")
    ok = validate_output(
        [{"answer": "x", "citations": ["a"], "retrieved": ["a", "b"], "extra": 1}], out, 1
    )
    assert ok == [{"answer": "x", "citations": ["a"], "retrieved": ["a", "b"]}]  # extra dropped
    for bad, needle in (
        ([{"answer": "x"}], "lacks"),
        ([{"answer": 3, "citations": [], "retrieved": []}], "must be text"),
        ([{"answer": None, "citations": "a", "retrieved": []}], "list of passage ids"),
        ([{"answer": None, "citations": [], "retrieved": []}] * 2, "expected 1"),
        (["x"], "not a dict"),
        ("x", "list of 1"),
    ):
        with pytest.raises(OutputError, match=needle):
            validate_output(bad, out, 1)
    from medai.autograder.modeldata import to_plain_output

    plainish = to_plain_output(
        [{"answer": np.str_("x"), "citations": (np.str_("a"),), "retrieved": np.array(["a"])}], out
    )
    assert validate_output(plainish, out, 1) == [
        {"answer": "x", "citations": ["a"], "retrieved": ["a"]}
    ]
    assert type(plainish[0]["answer"]) is str
