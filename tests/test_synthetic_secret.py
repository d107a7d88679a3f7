"""Hidden splits keyed by a per-deployment secret (medai.synthetic.secret, GenContext.hidden_rng).

Contract: the same key gives the same bytes; another key gives another hidden split (test items
and their labels) over the same public training split; no key gives the hidden split of the public
seed, as for self-study. The key file is made once with mode 0600, reused, and a bad one is a
clear error; `medai up` keys its datasets with it, and no sandbox binds it. The attacks on the
key from a trainee's kernel and a grading sandbox are in tests/test_hidden_data_attacks.py.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from medai.cli import app
from medai.synthetic import core
from medai.synthetic.core import DataError, fingerprint, generate, hidden_keying
from medai.synthetic.secret import ensure_secret, load_secret

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))

# dataset -> (size, public files that hold only training items, files that hold test items)
SPLITS: dict[str, tuple[int, tuple[str, ...], tuple[str, ...]]] = {
    "ehr": (
        300,
        ("public/ehr/outcomes_train.csv", "public/ehr/concepts.csv"),
        ("hidden/ehr/outcomes_test.csv", "hidden/ehr/truth.csv", "public/ehr/observations.csv"),
    ),
    "multisite": (
        400,
        (
            "public/multisite/sites.csv",
            "public/multisite/site_A.csv",
            "public/multisite/site_H.csv",
        ),
        ("hidden/multisite/test_labels.csv", "public/multisite/test_features.csv"),
    ),
    "survival": (
        300,
        ("public/survival/train.csv",),
        ("hidden/survival/test_outcomes.csv", "public/survival/test.csv"),
    ),
    "skin": (
        60,
        ("public/skin/train.npz", "public/skin/dev.npz", "public/skin/classes.json"),
        ("hidden/skin/test_labels.npz", "public/skin/test.npz"),
    ),
    "tumour": (
        40,
        ("public/tumour/train.npz", "public/tumour/dev.npz", "public/tumour/train_lesions.jsonl"),
        ("hidden/tumour/test_masks.npz", "hidden/tumour/test_lesions.jsonl"),
    ),
    "rppg": (12, ("public/rppg/train.npz",), ("hidden/rppg/test_labels.npz",)),
    "ecg": (40, ("public/ecg/train.npz",), ("hidden/ecg/test_labels.npz", "public/ecg/test.npz")),
    "notes": (
        40,
        ("public/notes/train.jsonl",),
        ("hidden/notes/test_spans.jsonl", "public/notes/test.jsonl"),
    ),
    "kb": (
        100,
        ("public/kb/passages.jsonl", "public/kb/train_questions.jsonl"),
        ("hidden/kb/test_answers.jsonl", "public/kb/test_questions.jsonl"),
    ),
    "label_scarce": (
        400,
        ("public/label_scarce/labelled.csv",),
        (
            "hidden/label_scarce/test_labels.csv",
            "hidden/label_scarce/unlabelled_labels.csv",
            "public/label_scarce/unlabelled.csv",
        ),
    ),
}


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "manifests" not in p.parts
    }


def _ctx(tmp_path: Path, secret: bytes | None, seed: int = 1) -> core.GenContext:
    from medai.synthetic.ehr import SPEC

    return core.GenContext(SPEC, 10, seed, "csv", tmp_path, tmp_path, secret=secret)


# --- the streams ------------------------------------------------------------------------------


def test_hidden_streams_without_a_key_are_the_public_ones(tmp_path):
    ctx = _ctx(tmp_path, None)
    assert not ctx.keyed
    assert np.array_equal(ctx.hidden_rng("people", 0).random(5), ctx.rng("people", 0).random(5))
    shared = ctx.rng("questions")
    assert ctx.hidden_rng("questions", public=shared) is shared


def test_hidden_streams_with_a_key_follow_the_key_not_the_seed(tmp_path):
    a, b = _ctx(tmp_path, KEY_A), _ctx(tmp_path, KEY_B)
    assert a.keyed
    draw = a.hidden_rng("people", 0).random(5)
    assert np.array_equal(draw, _ctx(tmp_path, KEY_A).hidden_rng("people", 0).random(5))
    assert not np.array_equal(draw, a.rng("people", 0).random(5))  # not the public stream
    assert not np.array_equal(draw, b.hidden_rng("people", 0).random(5))
    assert not np.array_equal(draw, a.hidden_rng("people", 1).random(5))
    shared = a.rng("questions")
    assert a.hidden_rng("questions", public=shared) is not shared
    assert a.rng("people", 0).random(3).tolist() == b.rng("people", 0).random(3).tolist()
    assert "secret" not in repr(a) and KEY_A.hex() not in repr(a)


# --- every generator --------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SPLITS))
def test_key_changes_the_test_items_and_nothing_public_about_training(tmp_path, name):
    n, train_files, test_files = SPLITS[name]
    trees = {}
    for run, key in (("a", KEY_A), ("a2", KEY_A), ("b", KEY_B), ("none", None), ("none2", None)):
        generate(name, tmp_path / run, n=n, seed=5, secret=key)
        trees[run] = _tree(tmp_path / run)
    assert trees["a"] == trees["a2"]  # same key, same bytes
    assert trees["none"] == trees["none2"]  # no key: the public seed decides everything
    assert set(trees["a"]) == set(trees["b"]) == set(trees["none"])
    for f in train_files:
        assert trees["a"][f] == trees["b"][f] == trees["none"][f], f
    for f in test_files:
        assert trees["a"][f] != trees["b"][f], f
        assert trees["a"][f] != trees["none"][f], f
    for run, key in (("a", KEY_A), ("none", None)):
        params = json.loads((tmp_path / run / "manifests" / f"{name}.json").read_text())
        want = f"secret:{fingerprint(key)}" if key else "public-seed"
        assert params["hidden_key"] == want == hidden_keying(name, tmp_path / run)
    everything = b"".join(p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert KEY_A not in everything and KEY_A.hex().encode() not in everything


@pytest.mark.parametrize("name", ["skin", "tumour", "ecg", "rppg", "notes"])
def test_test_items_keep_their_ids_so_grading_aligns(tmp_path, name):
    n = SPLITS[name][0]
    ids = []
    for run, key in (("a", KEY_A), ("b", KEY_B)):
        pub = generate(name, tmp_path / run, n=n, seed=2, secret=key)
        if name == "notes":
            ids.append([json.loads(x)["id"] for x in (pub / "test.jsonl").read_text().splitlines()])
        else:
            ids.append(np.load(pub / "test.npz")["id"].tolist())
    assert ids[0] == ids[1] and ids[0]


def test_ehr_keyed_cohort_keeps_training_rows_and_joins(tmp_path, monkeypatch):
    from medai.synthetic import ehr

    monkeypatch.setattr(ehr, "CHUNK", 120)  # several chunks, each merged with its hidden draw
    read = {}
    for run, key in (("none", None), ("a", KEY_A)):
        pub = generate("ehr", tmp_path / run, n=400, seed=3, secret=key)
        read[run] = {
            t: pd.read_csv(pub / f"{t}.csv")
            for t in ("patients", "encounters", "observations", "diagnoses", "medications")
        }
        read[run]["outcomes_test"] = pd.read_csv(pub.parent.parent / "hidden/ehr/outcomes_test.csv")
    plain, keyed = read["none"], read["a"]
    pts = keyed["patients"]
    assert pts["patient_id"].tolist() == plain["patients"]["patient_id"].tolist()
    assert pts["split"].tolist() == plain["patients"]["split"].tolist()  # public assignment
    train = set(pts.loc[pts["split"] == "train", "patient_id"])
    position = {p: i for i, p in enumerate(pts["patient_id"])}
    for table in ("patients", "encounters", "observations", "diagnoses", "medications"):
        a, b = (d[table][d[table]["patient_id"].isin(train)] for d in (plain, keyed))
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
        order = keyed[table]["patient_id"].map(position).to_numpy()
        assert (np.diff(order) >= 0).all(), f"{table} rows are not grouped by patient"
        test_rows = (d[table][~d[table]["patient_id"].isin(train)] for d in (plain, keyed))
        assert not next(test_rows).reset_index(drop=True).equals(next(test_rows))
    enc = keyed["encounters"]
    assert enc["encounter_id"].is_unique
    for table in ("observations", "diagnoses", "medications"):
        joined = keyed[table].merge(enc, on="encounter_id", suffixes=("", "_enc"))
        assert len(joined) == len(keyed[table])
        assert (joined["patient_id"] == joined["patient_id_enc"]).all()
    ot = keyed["outcomes_test"]
    assert set(ot["patient_id"]) == set(pts["patient_id"]) - train


# --- the key file -----------------------------------------------------------------------------


def test_key_file_is_made_once_private_and_reused(tmp_path):
    path = tmp_path / "state" / "secrets" / "data.key"
    key, created = ensure_secret(path)
    assert created and len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text() == key.hex() + "\n"
    again, created = ensure_secret(path)
    assert again == key and not created
    assert load_secret(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["data.key"]  # no temporary file left
    other, _ = ensure_secret(tmp_path / "other.key")
    assert other != key  # random, not derived from anything


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        ("ab" * 32 + "\n", 0o644, "may be read by other users (mode 0644); restrict it with"),
        ("ab" * 16 + "\n", 0o600, "must hold 64 hexadecimal digits (found 32 characters)"),
        ("zz" * 32 + "\n", 0o600, "found 64 characters, not all hex"),
        ("", 0o600, "must hold 64 hexadecimal digits (found 0 characters)"),
    ],
)
def test_bad_key_file_is_a_clear_error(tmp_path, content, mode, message):
    path = tmp_path / "data.key"
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_secret(path)
    with pytest.raises(DataError, match=str(path)):
        ensure_secret(path)  # never replaced silently: the hidden splits depend on it
    assert path.read_text() == content


def test_missing_or_odd_key_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"no data secret at .*medai data key"):
        load_secret(tmp_path / "nope.key")
    (tmp_path / "dir.key").mkdir()
    with pytest.raises(DataError, match="is not a regular file"):
        load_secret(tmp_path / "dir.key")
    with pytest.raises(DataError, match="at least 32 random bytes"):
        generate("ehr", tmp_path / "d", n=10, secret=b"short")
    assert not (tmp_path / "d").exists()


# --- the command line -------------------------------------------------------------------------

runner = CliRunner()


def test_cli_key_and_generate_with_it(tmp_path):
    key_file = tmp_path / "secrets" / "data.key"
    res = runner.invoke(app, ["data", "key", str(key_file)])
    assert res.exit_code == 0, res.stderr
    key = load_secret(key_file)
    assert f"created {key_file}" in res.stdout and fingerprint(key) in res.stdout
    assert key.hex() not in res.stdout
    res = runner.invoke(app, ["data", "key", str(key_file)])
    assert res.exit_code == 0 and "kept the existing key" in res.stdout
    assert load_secret(key_file) == key
    out = tmp_path / "data"
    args = ["data", "generate", "survival", "--n", "200", "--out", str(out), "-q"]
    res = runner.invoke(app, [*args, "--secret-file", str(key_file)])
    assert res.exit_code == 0, res.stderr
    assert f"keyed by {key_file} (key {fingerprint(key)})" in res.stdout
    assert hidden_keying("survival", out) == f"secret:{fingerprint(key)}"
    direct = generate("survival", tmp_path / "direct", n=200, secret=key, seed=20261123)
    assert _tree(out) == _tree(direct.parent.parent)
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "for self-study only" in res.stdout
    assert hidden_keying("survival", out) == "public-seed"


def test_cli_generate_with_a_bad_key_file_writes_nothing(tmp_path):
    bad = tmp_path / "data.key"
    bad.write_text("ab" * 32 + "\n")
    bad.chmod(0o640)
    out = tmp_path / "data"
    res = runner.invoke(
        app, ["data", "generate", "ehr", "--n", "50", "--out", str(out), "--secret-file", str(bad)]
    )
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and f"chmod 600 {bad}" in res.stderr
    assert not out.exists()


# --- medai up and grading ---------------------------------------------------------------------


def _course(tmp_path: Path, seed: int = 20261123):
    from medai.config import CourseConfig

    return CourseConfig.model_validate(
        {
            "course": {"id": "c1", "title": "C1"},
            "people": {"instructors": ["t"], "trainees": ["a"]},
            "datasets": [{"name": "survival", "n": 200, "seed": seed}],
        }
    )


def test_medai_up_keys_its_data_and_regenerates_when_the_key_changes(tmp_path, capsys):
    from medai.hub.launcher import prepare_data
    from medai.hub.layout import StateLayout

    layout = StateLayout(tmp_path / "state")
    prepare_data(_course(tmp_path), layout)
    key = load_secret(layout.data_secret)
    assert stat.S_IMODE(layout.data_secret.stat().st_mode) == 0o600
    assert "made the hidden splits' key" in capsys.readouterr().out
    assert hidden_keying("survival", layout.data) == f"secret:{fingerprint(key)}"
    stamp = layout.data / "manifests" / "survival.params.json"
    assert json.loads(stamp.read_text())["key"] == fingerprint(key)
    for p in layout.data.rglob("*"):
        if p.is_file():
            assert key.hex().encode() not in p.read_bytes() and key not in p.read_bytes()
    hidden = (layout.hidden_data / "survival" / "test_outcomes.csv").read_bytes()

    prepare_data(_course(tmp_path), layout)  # same key, size, seed: kept
    assert "survival already generated" in capsys.readouterr().out

    os.unlink(layout.data_secret)  # a lost key: a new one, new hidden splits
    prepare_data(_course(tmp_path), layout)
    assert load_secret(layout.data_secret) != key
    assert "generated survival" in capsys.readouterr().out
    assert (layout.hidden_data / "survival" / "test_outcomes.csv").read_bytes() != hidden


def test_medai_up_refuses_a_readable_key(tmp_path):
    from medai.hub.launcher import LaunchError, prepare_data
    from medai.hub.layout import StateLayout

    layout = StateLayout(tmp_path / "state")
    ensure_secret(layout.data_secret)
    layout.data_secret.chmod(0o644)
    with pytest.raises(LaunchError, match="chmod 600"):
        prepare_data(_course(tmp_path), layout)


def test_grader_warns_about_hidden_splits_anyone_can_regenerate(tmp_path):
    from medai.autograder.batch import unkeyed_warnings

    generate("survival", tmp_path / "plain", n=100)
    generate("survival", tmp_path / "keyed", n=100, secret=KEY_A)
    (warning,) = unkeyed_warnings(["survival"], tmp_path / "plain")
    assert "follows from the public seed" in warning and "--secret-file" in warning
    assert unkeyed_warnings(["survival"], tmp_path / "keyed") == []
    assert unkeyed_warnings(["survival"], tmp_path / "absent") != []  # no manifest: not keyed


def _bound_hosts(argv: list[str]) -> list[Path]:
    return [
        Path(argv[i + 1])
        for i, a in enumerate(argv)
        if a in ("--bind", "--ro-bind", "--bind-try", "--ro-bind-try")
    ]


def test_no_sandbox_binds_the_key_or_its_folder(tmp_path):
    from medai.autograder.sandbox import BubblewrapBackend, SandboxJob
    from medai.hub.hubconfig import formgrader_argv
    from medai.hub.layout import StateLayout
    from medai.isolation import bwrap, profiles
    from medai.isolation.bwrap import Software
    from medai.isolation.limits import Limits

    layout = StateLayout(tmp_path / "state")
    software = Software.detect()
    job = SandboxJob(tmp_path / "job", layout.public_data)
    argvs = {
        "trainee": bwrap.argv(
            profiles.trainee_server(
                layout, "alice", ["c1"], software, Limits.server(memory_mb=512, cpus=None)
            )
        ),
        "formgrader": formgrader_argv(layout, "c1", software),
        "grading": BubblewrapBackend(bwrap="/usr/bin/bwrap")._argv(job, {}),
    }
    for name, argv in argvs.items():
        hosts = _bound_hosts(argv)
        assert hosts, name
        for host in hosts:
            assert not layout.data_secret.is_relative_to(host), (name, host)
            assert not layout.hidden_data.is_relative_to(host), (name, host)
