"""Catalogue models: reference training is deterministic, cards carry honest per-subgroup
metrics, and a model file cannot run code or be swapped when a trainee loads it."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from medai.catalog import reference
from medai.catalog.cards import CARD_FILE, ModelCard
from medai.catalog.models import (
    MODELS_ENV,
    ModelError,
    get_card,
    list_models,
    load_model,
    sha256_file,
    write_model,
    write_model_file,
)

pytestmark = pytest.mark.slow  # trains the reference models (seconds)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ehr_public(tmp_path_factory) -> Path:
    return reference.generate_ehr(tmp_path_factory.mktemp("ehr"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, ehr_public) -> Path:
    models = tmp_path_factory.mktemp("models")
    reference.build(models, data=ehr_public)
    return models


def test_every_reference_model_is_built_with_a_complete_card(built):
    cards, problems = list_models(built)
    assert problems == []
    assert [c.name for c in cards] == sorted(reference.recipe_names())
    for c in cards:
        assert c.kind == "reference" and c.version == reference.VERSION
        assert c.intended_use and c.not_for and c.limitations
        assert {s.attribute for s in c.subgroups} == set(reference.SUBGROUP_COLUMNS)
        assert all(r.passed for r in c.release_checks), c.release_checks
        assert c.metrics["auroc"] > reference.MIN_AUROC
        assert sha256_file(built / c.name / c.file) == c.sha256
        assert (built / c.name / "card.md").read_text().startswith(f"# {c.title}")


def test_reference_training_is_deterministic(tmp_path, built):
    """A second build from freshly generated data gives the same cards and the same risks."""
    again = tmp_path / "models"
    reference.build(again)  # generates the EHR cohort itself, from the fixed recipe
    rows = reference.ehr_stroke_rows(reference.generate_ehr(tmp_path / "data"))
    for name in reference.recipe_names():
        a = json.loads((built / name / CARD_FILE).read_text())
        b = json.loads((again / name / CARD_FILE).read_text())
        a.pop("sha256"), b.pop("sha256")  # the zip container may differ; the model may not
        assert a == b, name
        x = rows.X[rows.evaluate]
        ra = load_model(name, built).predict_proba(x)
        rb = load_model(name, again).predict_proba(x)
        np.testing.assert_array_equal(ra, rb)


def _by_hand(y: np.ndarray, p: np.ndarray, t: float) -> dict:
    """The card's metrics recomputed without medai.catalog.metrics or fairlearn."""
    flag = p >= t
    both = len(set(y)) == 2
    return {
        "auroc": roc_auc_score(y, p) if both else None,
        "average_precision": average_precision_score(y, p) if both else None,
        "brier": brier_score_loss(y, p),
        "sensitivity": (flag & (y == 1)).sum() / (y == 1).sum() if (y == 1).any() else None,
        "specificity": (~flag & (y == 0)).sum() / (y == 0).sum() if (y == 0).any() else None,
        "ppv": (flag & (y == 1)).sum() / flag.sum() if flag.any() else None,
    }


def _close(card_value, value) -> bool:
    if card_value is None or value is None:
        return card_value is None and value is None
    return abs(card_value - float(value)) <= 6e-5  # cards keep 4 digits


def test_card_metrics_overall_and_per_subgroup_match_a_recomputation(built, ehr_public):
    rows = reference.ehr_stroke_rows(ehr_public)
    x, y = rows.X[rows.evaluate], rows.y[rows.evaluate].to_numpy()
    groups = rows.groups[rows.evaluate]
    for name in reference.recipe_names():
        card = get_card(name, built)
        assert card.data.n_eval == len(y) and card.data.features == list(x.columns)
        risk = load_model(name, built).predict_proba(x)[:, 1]
        expect = _by_hand(y, risk, card.threshold)
        for metric, value in expect.items():
            assert _close(card.metrics[metric], value), (name, metric)
        seen = 0
        for attribute in reference.SUBGROUP_COLUMNS:
            for group in sorted(set(groups[attribute])):
                mask = (groups[attribute] == group).to_numpy()
                sub = card.subgroup(attribute, group)
                assert (sub.n, sub.positives) == (int(mask.sum()), int(y[mask].sum()))
                expect = _by_hand(y[mask], risk[mask], card.threshold)
                for metric, value in expect.items():
                    assert _close(sub.metrics[metric], value), (name, attribute, group, metric)
                seen += 1
        assert seen == len(card.subgroups)


def test_no_reference_model_predicts_an_outcome_a_lab_grades(built):
    """A trainee could hand in a reference model instead of their own: none may predict a
    label any lab's tasks.yaml grades on the same dataset."""
    graded = set()
    for tasks in REPO.glob("labs/*/tasks.yaml"):
        text = tasks.read_text(encoding="utf-8")
        for doc in yaml.safe_load_all(text):
            stack = [doc]
            while stack:
                node = stack.pop()
                if isinstance(node, dict):
                    if "column" in node:
                        graded.add(str(node["column"]))
                    stack += list(node.values())
                elif isinstance(node, list):
                    stack += node
    assert "ckd_5y" in graded  # the scan finds module 3's label
    cards, _ = list_models(built)
    assert cards
    for card in cards:
        label = card.data.target.split()[0]
        assert label not in graded, card.name
        assert any(c.name == "no graded outcome" and c.passed for c in card.release_checks)


# --- attacks on the models folder, as the author of a released model would try them ---------


def _publish_by_hand(root: Path, name: str, payload: Path) -> None:
    """A model folder written around any file, with a card whose checksum matches it."""
    folder = root / name
    folder.mkdir(parents=True)
    shutil.copy(payload, folder / "model.skops")
    card = get_card("stroke-risk-logistic", root.parent / "models")
    card = card.model_copy(update={"name": name, "sha256": sha256_file(folder / "model.skops")})
    (folder / CARD_FILE).write_text(card.model_dump_json())


@pytest.fixture
def hostile(tmp_path, built) -> Path:
    root = tmp_path / "hostile"
    root.mkdir()
    shutil.copytree(built, tmp_path / "models")
    return root


def test_a_model_hiding_a_function_is_refused_on_writing_and_on_loading(hostile, tmp_path):
    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    evil = make_pipeline(FunctionTransformer(func=os.system))
    card = get_card("stroke-risk-logistic", tmp_path / "models").model_copy(update={"name": "evil"})
    with pytest.raises(ModelError, match="posix.system"):
        write_model(hostile, evil, card)
    assert not (hostile / "evil").exists() and list(hostile.iterdir()) == []
    sio.dump(evil, tmp_path / "evil.skops")
    with pytest.raises(ModelError, match="posix.system"):  # the sandbox's way in
        write_model_file(hostile, tmp_path / "evil.skops", card)
    assert list(hostile.iterdir()) == []
    _publish_by_hand(hostile, "evil", tmp_path / "evil.skops")
    with pytest.raises(ModelError, match="refused to load.*posix.system"):
        load_model("evil", hostile)


def test_a_pickle_named_skops_is_refused(hostile, tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "p.skops").write_bytes(pickle.dumps(Path(marker)))
    _publish_by_hand(hostile, "pickled", tmp_path / "p.skops")
    with pytest.raises(ModelError, match="not a readable skops file"):
        load_model("pickled", hostile)


def test_a_swapped_model_file_is_refused(tmp_path, built):
    root = tmp_path / "models"
    shutil.copytree(built, root)
    a, b = root / "stroke-risk-logistic" / "model.skops", root / "stroke-risk-boosting"
    shutil.copy(b / "model.skops", a)  # a valid model, but not the one the card describes
    with pytest.raises(ModelError, match="SHA-256 differs"):
        load_model("stroke-risk-logistic", root)
    assert load_model("stroke-risk-boosting", root) is not None


def test_names_and_files_cannot_leave_the_models_folder(tmp_path, built):
    with pytest.raises(ValueError, match="not a catalogue name"):
        load_model("../models/stroke-risk-logistic", built)
    card = json.loads((built / "stroke-risk-logistic" / CARD_FILE).read_text())
    for bad in ("../../etc/passwd", "/etc/passwd", "model.pkl"):
        with pytest.raises(ValueError, match="plain"):
            ModelCard.model_validate(card | {"file": bad})


def test_load_model_reads_medai_models_and_says_how_to_fix_a_missing_one(monkeypatch, built):
    monkeypatch.setenv(MODELS_ENV, str(built))
    assert hasattr(load_model("stroke-risk-boosting"), "predict_proba")
    with pytest.raises(ModelError, match="no model 'nope'.*stroke-risk-boosting"):
        load_model("nope")
    monkeypatch.delenv(MODELS_ENV)
    with pytest.raises(ModelError, match="MEDAI_MODELS"):
        load_model("stroke-risk-boosting")


def test_models_cli_builds_lists_and_shows_cards(tmp_path):
    from typer.testing import CliRunner

    from medai.cli import app

    runner = CliRunner()
    state = tmp_path / "state"
    res = runner.invoke(app, ["models", "list", "--state", str(state)])
    assert res.exit_code == 0 and "medai models build" in res.stdout
    res = runner.invoke(app, ["models", "build", "--state", str(state)])
    assert res.exit_code == 0, res.output
    assert "built 2 model(s)" in res.stdout
    page = state / "catalog" / "README.md"
    assert "stroke-risk-logistic" in page.read_text()
    res = runner.invoke(app, ["models", "list", "--state", str(state)])
    header, *rows = res.stdout.splitlines()
    assert [r.split()[0] for r in rows] == sorted(reference.recipe_names())
    row = next(r for r in rows if r.startswith("stroke-risk-logistic"))
    card = get_card("stroke-risk-logistic", state / "catalog" / "models")
    assert row.split()[:4] == [
        "stroke-risk-logistic",
        "reference",
        f"{card.metrics['auroc']:.3f}",
        "ehr",
    ]
    res = runner.invoke(
        app, ["models", "show", "stroke-risk-logistic", "--state", str(state), "--json"]
    )
    assert ModelCard.model_validate_json(res.stdout) == card
    res = runner.invoke(app, ["models", "show", "nope", "--state", str(state)])
    assert res.exit_code == 2 and "no model 'nope'" in res.stderr
    res = runner.invoke(app, ["models", "build", "--state", str(state), "--name", "nope"])
    assert res.exit_code == 2 and "choose from stroke-risk-logistic" in res.stderr


def test_a_model_released_by_the_sandbox_is_published_like_a_reference_one(tmp_path, built):
    """The sandbox hands over the skops file its job wrote and a card; the catalogue lists it,
    its page says it was released, and it loads."""
    from datetime import UTC, datetime

    from medai.catalog.cards import ModelData
    from medai.catalog.entries import all_models
    from medai.catalog.render import catalogue_markdown

    ref = get_card("stroke-risk-logistic", built)
    card = ref.model_copy(
        update={
            "name": "ckd-private-alice",
            "kind": "released",
            "author": "alice",
            "created": datetime(2026, 12, 1, tzinfo=UTC),
            "data": ModelData.model_validate(
                ref.data.model_dump()
                | {
                    "dataset": "cohort-x",
                    "access": "sandboxed",
                    "recipe": "private cohort, in the data sandbox",
                }
            ),
        }
    )
    models = tmp_path / "models"
    folder = write_model_file(models, built / "stroke-risk-logistic" / "model.skops", card)
    cards, problems = all_models(models)
    assert problems == [] and [c.name for c in cards] == ["ckd-private-alice"]
    assert cards[0].sha256 == sha256_file(folder / "model.skops")
    page = (folder / "card.md").read_text()
    assert "**Released model `ckd-private-alice`**" in page and "(sandboxed)" in page
    assert "| `ckd-private-alice` | released |" in catalogue_markdown([], cards)
    assert hasattr(load_model("ckd-private-alice", models), "predict_proba")
