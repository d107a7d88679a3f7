"""The generator contract (medai.synthetic.core) and the `medai data` verbs.

Uses the ``ehr`` generator at small sizes as the real workload: requests are validated, output
is byte-reproducible, and a failed, interrupted or refused request leaves nothing partial.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from medai.cli import app
from medai.synthetic import core
from medai.synthetic._tables import pseudonyms
from medai.synthetic.core import DataError, DatasetSpec, generate, verify


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- request validation: clear errors, nothing written ----------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "no_such_set"}, "unknown dataset 'no_such_set'"),
        ({"name": "ehr", "n": 0}, "--n must be a positive whole number of patients"),
        ({"name": "ehr", "n": -5}, "--n must be a positive whole number"),
        ({"name": "ehr", "n": 2.5}, "--n must be a positive whole number"),
        ({"name": "ehr", "n": True}, "--n must be a positive whole number"),
        ({"name": "ehr", "n": 10**9}, "above the limit"),
        ({"name": "multisite", "n": 10}, "below the minimum of 400"),
        ({"name": "ehr", "seed": -1}, "--seed must be a whole number >= 0"),
        ({"name": "ehr", "fmt": "npz"}, "cannot be written as npz; supported: csv, parquet"),
    ],
)
def test_bad_request_is_refused_before_writing(tmp_path, kwargs, message):
    root = tmp_path / "data"
    name = kwargs.pop("name")
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        generate(name, root, **kwargs)
    assert not root.exists()


def test_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot create output folder"):
        generate("ehr", blocker / "data", n=10)
    assert blocker.read_text() == "not a folder"


def test_failing_generator_leaves_nothing(tmp_path, monkeypatch):
    def write(ctx):
        (ctx.public_dir / "half.csv").write_text("a,b\n1,")
        (ctx.hidden_dir / "labels.csv").write_text("x\n")
        raise RuntimeError("generator bug")

    spec = DatasetSpec(name="broken", summary="", default_n=5, formats=("csv",), write=write)
    monkeypatch.setattr(core, "get_spec", lambda name: spec)
    root = tmp_path / "data"
    with pytest.raises(RuntimeError, match="generator bug"):
        generate("broken", root)
    assert list(root.iterdir()) == []  # no public/, hidden/, manifests/ nor temporary folder


def test_interrupted_regeneration_keeps_the_previous_version(tmp_path):
    root = tmp_path / "data"
    generate("ehr", root, n=300, seed=1)
    before = _tree(root)

    def interrupt(k):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate("ehr", root, n=400, seed=2, progress=interrupt)
    assert _tree(root) == before
    assert verify("ehr", root) == []


def test_failed_move_into_place_restores_the_previous_version(tmp_path, monkeypatch):
    root = tmp_path / "data"
    generate("ehr", root, n=200, seed=1)
    before = _tree(root)
    real_replace = os.replace
    calls = {"n": 0}

    def flaky_replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 6:  # 4 old parts saved, 1 new part placed, then the disk "fails"
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(core.os, "replace", flaky_replace)
    with pytest.raises(DataError, match="No space left on device"):
        generate("ehr", root, n=300, seed=2)
    monkeypatch.setattr(core.os, "replace", real_replace)
    assert calls["n"] > 6
    assert _tree(root) == before
    assert sorted(p.name for p in root.iterdir()) == ["hidden", "manifests", "public"]


# --- reproducibility --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_same_seed_same_bytes(tmp_path, fmt):
    a = generate("ehr", tmp_path / "a", n=1500, seed=11, fmt=fmt).parent.parent
    b = generate("ehr", tmp_path / "b", n=1500, seed=11, fmt=fmt).parent.parent
    c = generate("ehr", tmp_path / "c", n=1500, seed=12, fmt=fmt).parent.parent
    assert _tree(a) == _tree(b)
    assert _tree(a)["public/ehr/patients." + fmt] != _tree(c)["public/ehr/patients." + fmt]
    manifest = (a / "manifests" / "ehr.sha256").read_text().splitlines()
    assert {line.split("  ")[1] for line in manifest} == {
        k for k in _tree(a) if not k.startswith("manifests/")
    }


def test_full_chunks_do_not_depend_on_n(tmp_path, monkeypatch):
    from medai.synthetic import ehr

    monkeypatch.setattr(ehr, "CHUNK", 100)  # the real chunk (50,000 patients) is slow to test
    small = generate("ehr", tmp_path / "s", n=200, seed=3)
    large = generate("ehr", tmp_path / "l", n=350, seed=3)
    ps = pacsv.read_csv(small / "patients.csv")
    pl = pacsv.read_csv(large / "patients.csv")
    assert ps.equals(pl.slice(0, 200))
    assert not ps.slice(100, 100).equals(pl.slice(200, 100))


def test_package_exposes_the_contract():
    import medai.synthetic as synthetic

    assert synthetic.generate is core.generate
    assert synthetic.DataError is DataError
    assert [s.name for s in synthetic.all_specs()] == core.available()


def test_rng_streams_are_independent_and_repeatable(tmp_path):
    from medai.synthetic.ehr import SPEC

    def ctx(seed):
        return core.GenContext(SPEC, 10, seed, "csv", tmp_path, tmp_path)

    a = ctx(1).rng("people", 0).random(5)
    assert np.array_equal(a, ctx(1).rng("people", 0).random(5))
    assert not np.array_equal(a, ctx(1).rng("people", 1).random(5))
    assert not np.array_equal(a, ctx(2).rng("people", 0).random(5))


def test_pseudonyms_are_unique_and_opaque():
    ids = pseudonyms("P", np.arange(1_000_000), key=12345).to_numpy(zero_copy_only=False)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 13 and i[0] == "P" for i in ids[:100])
    other = pseudonyms("P", np.arange(10), key=54321).to_numpy(zero_copy_only=False)
    assert not set(other) & set(ids[:10])


def test_verify_reports_changed_missing_and_extra_files(tmp_path):
    root = tmp_path / "data"
    pub = generate("ehr", root, n=100, seed=0)
    assert verify("ehr", root) == []
    (pub / "patients.csv").write_text("tampered\n")
    (root / "hidden" / "ehr" / "effects.json").unlink()
    (pub / "notes.txt").write_text("extra")
    problems = verify("ehr", root)
    assert "changed: public/ehr/patients.csv" in problems
    assert "missing: hidden/ehr/effects.json" in problems
    assert "unexpected: public/ehr/notes.txt" in problems


# --- the CLI ----------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_list_and_info():
    res = runner.invoke(app, ["data", "list"])
    assert res.exit_code == 0, res.stderr
    header, *lines = res.stdout.splitlines()
    assert header.split()[:2] == ["NAME", "KIND"]
    names = [line.split()[0] for line in lines if line.split()[1] == "public"]
    assert names[:3] == ["ehr", "multisite", "survival"]
    assert set(core.available()) == set(names)
    res = runner.invoke(app, ["data", "info", "survival"])
    assert res.exit_code == 0
    assert "# Survival" in res.stdout and "not for clinical use" in res.stdout


def test_cli_generate_and_verify(tmp_path):
    out = tmp_path / "data"
    res = runner.invoke(
        app, ["data", "generate", "ehr", "--n", "300", "--seed", "4", "--out", str(out), "-q"]
    )
    assert res.exit_code == 0, res.stderr
    assert (out / "public" / "ehr" / "observations.csv").is_file()
    assert (out / "hidden" / "ehr" / "outcomes_test.csv").is_file()
    assert f"MEDAI_DATA={out.resolve() / 'public'}" in res.stdout
    res = runner.invoke(app, ["data", "verify", "ehr", "--out", str(out)])
    assert res.exit_code == 0, res.stderr
    (out / "public" / "ehr" / "patients.csv").write_text("x\n")
    res = runner.invoke(app, ["data", "verify", "ehr", "--out", str(out)])
    assert res.exit_code == 1 and "changed: public/ehr/patients.csv" in res.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "nope"], "unknown dataset 'nope'"),
        (["generate", "ehr", "--n", "0"], "--n must be a positive whole number"),
        (["generate", "ehr", "--format", "npz"], "cannot be written as npz"),
        (["info", "nope"], "unknown dataset 'nope'"),
        (["verify", "ehr"], "no manifest"),
    ],
)
def test_cli_bad_input(tmp_path, args, message):
    if args[0] == "verify":
        args = [*args, "--out", str(tmp_path / "empty")]
    else:
        args = [*args, "--out", str(tmp_path / "d")] if args[0] == "generate" else args
    res = runner.invoke(app, ["data", *args])
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and message in res.stderr
    assert not (tmp_path / "d").exists()


# --- the self-study cache key follows every module that shapes the data ------------------------

_IMPORTED = """
import json, sys, tempfile
from medai.synthetic.core import generate, get_spec
name = sys.argv[1]
with tempfile.TemporaryDirectory() as out:
    generate(name, out, n=get_spec(name).min_n, seed=1)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "medai")))
"""


@pytest.mark.parametrize("name", core.available())
def test_cache_key_covers_every_module_a_generation_runs(name):
    """Every medai module loaded while generating ``name`` is hashed into its cache key (so a
    change to a shared helper such as _cohort or _tables regenerates the self-study copy)."""
    import json
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-c", _IMPORTED, name], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    loaded = set(json.loads(res.stdout))
    hashed = set(core.generator_modules(name))
    assert loaded - hashed == set(), f"{name}: not in the cache key: {sorted(loaded - hashed)}"
    assert f"medai.synthetic.{name}" in hashed and "medai.synthetic.core" in hashed
