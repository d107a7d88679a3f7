"""Regenerating the hidden split, from inside a trainee's kernel on a real hub.

The generators, the seeds, the sizes and the defaults are public, so a trainee can run
``medai.synthetic.generate`` in their own notebook and look the answers up. The hub of the
``running_hub`` fixture generated a small dataset of every generator with its data key; alice's
kernel then regenerates each of them with the public default seed, the course's seed and size, and
a few others, into her home. Outside the sandbox the test compares what she made with the hidden
files on the host:

- no hidden file is reproduced byte for byte;
- joined by item id, her regenerated labels predict the real hidden labels no better than chance:
  the agreement is within the spread of the same labels paired with shuffled ids (a permutation
  null), where the old code's regeneration agreed perfectly;
- the data key itself is neither readable at its host path nor anywhere in her file system.

The ``kb`` answers are stated in the public passages (retrieval is the lab), so looking a test
question up by its text in a regenerated question pool answers it by design; what the key hides
there is which questions are asked, under which id, and the hidden file itself.
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medai.synthetic.core import get_spec
from medai.synthetic.notes import score_spans

pytestmark = pytest.mark.slow

PUBLIC_DEFAULT_SEED = 20261123  # `medai data generate` and the course file's default
OTHER_SEEDS = (0, 1)


def _plan(datasets) -> list[tuple[str, int, int]]:
    """(dataset, n, seed) an attacker tries: the course's size and seed, the public default seed,
    other small seeds, and the generator's default size."""
    plan: list[tuple[str, int, int]] = []
    for ds in datasets:
        default_n = get_spec(ds.name).default_n
        n = ds.n or default_n
        tries = [(n, ds.seed), (n, PUBLIC_DEFAULT_SEED), *((n, s) for s in OTHER_SEEDS)]
        tries += [(default_n, ds.seed), (default_n, PUBLIC_DEFAULT_SEED)]
        for size, seed in tries:
            if (ds.name, size, seed) not in plan:
                plan.append((ds.name, size, seed))
    return plan


@pytest.fixture(scope="module")
def regenerated(running_hub, alice) -> tuple[Path, list[tuple[str, int, int]]]:
    """Alice's kernel regenerates every planned variant into ~/regen/<name>-<n>-<seed>."""
    plan = _plan(running_hub.config.datasets)
    code = textwrap.dedent(
        f"""
        import os, shutil
        from medai.synthetic import generate
        out = os.path.expanduser("~/regen")
        shutil.rmtree(out, ignore_errors=True)
        for name, n, seed in {plan!r}:
            generate(name, f"{{out}}/{{name}}-{{n}}-{{seed}}", n=n, seed=seed)
        print("regenerated", len(os.listdir(out)))
        """
    )
    res = alice.execute(code, timeout=900)
    assert res.error is None, res.error + res.stderr
    assert f"regenerated {len(plan)}" in res.stdout
    return running_hub.layout.home("alice") / "regen", plan


# --- labels, by item id, of a generated data root ----------------------------------------------


def _csv(path: Path, id_col: str, col: str) -> dict:
    d = pd.read_csv(path)
    return dict(zip(d[id_col].astype(str), d[col], strict=True))


def _npz(path: Path, key: str) -> dict:
    z = np.load(path)
    return {str(i): v for i, v in zip(z["id"], z[key], strict=True)}


def _jsonl(path: Path, key: str) -> dict:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {r["id"]: r[key] for r in rows}


def _equal(a: list, b: list) -> float:
    return float(np.mean([x == y for x, y in zip(a, b, strict=True)]))


def _neg_mae(a: list, b: list) -> float:
    return -float(np.mean(np.abs(np.asarray(a, float) - np.asarray(b, float))))


def _mask_agreement(a: list, b: list) -> float:
    return float(np.mean([np.mean((x > 0) == (y > 0)) for x, y in zip(a, b, strict=True)]))


def _span_recall(pred: list, gold: list) -> float:
    return score_spans(gold, pred)["recall"]


# dataset -> [(what, labels of a root, agreement: higher = better prediction)]
Labels = Callable[[Path], dict]
LABELS: dict[str, list[tuple[str, Labels, Callable[[list, list], float]]]] = {
    "ehr": [
        ("ckd_5y", lambda r: _csv(r / "outcomes_test.csv", "patient_id", "ckd_5y"), _equal),
        ("stroke_5y", lambda r: _csv(r / "outcomes_test.csv", "patient_id", "stroke_5y"), _equal),
    ],
    "multisite": [
        ("ckd_5y", lambda r: _csv(r / "test_labels.csv", "patient_id", "ckd_5y"), _equal)
    ],
    "survival": [
        ("event", lambda r: _csv(r / "test_outcomes.csv", "patient_id", "event"), _equal),
        ("time", lambda r: _csv(r / "test_outcomes.csv", "patient_id", "time_days"), _neg_mae),
    ],
    "skin": [("class", lambda r: _npz(r / "test_labels.npz", "labels"), _equal)],
    "tumour": [("mask", lambda r: _npz(r / "test_masks.npz", "masks"), _mask_agreement)],
    "rppg": [("hr_bpm", lambda r: _npz(r / "test_labels.npz", "hr_bpm"), _neg_mae)],
    "ecg": [("rhythm", lambda r: _npz(r / "test_labels.npz", "labels"), _equal)],
    "notes": [("spans", lambda r: _jsonl(r / "test_spans.jsonl", "spans"), _span_recall)],
    "kb": [("answer", lambda r: _jsonl(r / "test_answers.jsonl", "answer"), _equal)],
    "label_scarce": [
        ("test", lambda r: _csv(r / "test_labels.csv", "id", "label"), _equal),
        ("oracle", lambda r: _csv(r / "unlabelled_labels.csv", "id", "label"), _equal),
    ],
}


def better_than_chance(
    guess: dict, truth: dict, agreement: Callable[[list, list], float], rounds: int = 300
) -> tuple[float, float, float, int]:
    """(observed agreement, null mean, null sd, shared ids) of ``guess`` as a prediction of
    ``truth`` on their shared ids; the null pairs the same guesses with shuffled true labels."""
    ids = sorted(set(guess) & set(truth))
    if len(ids) < 10:
        return float("nan"), float("nan"), float("nan"), len(ids)
    g, t = [guess[i] for i in ids], [truth[i] for i in ids]
    rng = np.random.default_rng(0)
    null = [agreement(g, [t[j] for j in rng.permutation(len(t))]) for _ in range(rounds)]
    return agreement(g, t), float(np.mean(null)), float(np.std(null)), len(ids)


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# --- tests --------------------------------------------------------------------------------------


def test_hub_keyed_every_dataset_of_the_course(running_hub):
    from medai.synthetic.core import hidden_keying

    for ds in running_hub.config.datasets:
        assert hidden_keying(ds.name, running_hub.layout.data).startswith("secret:"), ds.name
    assert {ds.name for ds in running_hub.config.datasets} == set(LABELS)


# Hidden files that hold only the planted model (coefficients, site parameters, class means), all
# printed on the dataset cards, plus the request (n, seed): the same for every key, by design.
PUBLISHED = {
    ("ehr", "effects.json"),
    ("multisite", "sites_truth.json"),
    ("label_scarce", "truth.json"),
}


def test_regenerating_in_the_kernel_reproduces_no_hidden_file(running_hub, regenerated):
    root, plan = regenerated
    course = {
        ds.name: (ds.n or get_spec(ds.name).default_n, ds.seed)
        for ds in running_hub.config.datasets
    }
    compared = 0
    for name, n, seed in plan:
        host = _digests(running_hub.layout.hidden_data / name)
        mine = _digests(root / f"{name}-{n}-{seed}" / "hidden" / name)
        assert set(host) == set(mine), (name, sorted(host), sorted(mine))
        for rel, digest in host.items():
            if (name, rel) in PUBLISHED:
                if (n, seed) == course[name]:  # nothing keyed in them
                    assert mine[rel] == digest, (name, rel)
                continue
            assert mine[rel] != digest, f"{name}/{rel} reproduced with n={n}, seed={seed}"
            compared += 1
    assert compared >= len(plan)


def test_regenerated_labels_predict_hidden_labels_no_better_than_chance(running_hub, regenerated):
    root, plan = regenerated
    course = {
        ds.name: (ds.n or get_spec(ds.name).default_n, ds.seed)
        for ds in running_hub.config.datasets
    }
    report, aligned = [], set()
    for name, n, seed in plan:
        for what, labels, agreement in LABELS[name]:
            truth = labels(running_hub.layout.hidden_data / name)
            guess = labels(root / f"{name}-{n}-{seed}" / "hidden" / name)
            seen, mean, sd, shared = better_than_chance(guess, truth, agreement)
            if shared < 10:
                continue  # other pseudonyms (another seed): nothing to look up
            if (n, seed) == course[name]:
                aligned.add((name, what))
            report.append(f"{name}/{what} n={n} seed={seed}: {seen:.3f} vs {mean:.3f}±{sd:.3f}")
            assert seen <= mean + 5 * sd + 1e-9, report[-1]
    print("\n".join(report))
    # the course's own seed and size line the ids up for every label: the comparison was real
    assert aligned == {(name, what) for name, rows in LABELS.items() for what, *_ in rows}


def test_the_data_key_is_out_of_the_trainees_reach(running_hub, alice):
    from tests.test_hub_isolation import run_probe

    layout = running_hub.layout
    key_hex = layout.data_secret.read_text().strip()
    probe = run_probe(
        alice,
        {
            "host_paths": [str(layout.data_secret), str(layout.hidden_data / "ehr" / "truth.csv")],
            "markers": [key_hex],
            "state_root": str(layout.root),
        },
    )
    assert probe["readable"] == []
    assert probe["found"] == []
