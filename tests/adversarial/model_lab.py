"""A two-task lab with a ``model`` and a ``property`` task, and hostile answers to it.

:func:`write_lab` lays out a small dataset (public ``train.npz``/``test.npz``, hidden
``test_labels.npz``) and the lab's source folder (a notebook with nbgrader metadata and
``tasks.yaml``). :data:`ANSWERS` maps a student name to the answer cell it submits: an honest
one, and one per threat against the new kinds. The attacks that would *earn points if a defence
failed* (reading the hidden labels) really test the defence.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from medai.testing.example_lab import write_toy_lab

TASKS = {
    "lab": "toy",
    "tasks": {
        "split": {"kind": "property", "property": "disjoint", "params": {"min_size": 2}},
        "toy_model": {
            "kind": "model",
            "dataset": "toy",
            "dev": {
                "inputs": {"npz": "train.npz", "key": "x"},
                "labels": {"npz": "train.npz", "key": "y"},
            },
            "test": {
                "inputs": {"npz": "test.npz", "key": "x"},
                "labels": {"hidden": True, "npz": "test_labels.npz", "key": "y"},
            },
            "output": {"type": "proba", "classes": 2},
            "metrics": [
                {"name": "auroc", "full_marks_at": 0.85, "zero_marks_at": 0.6},
                {"name": "brier", "full_marks_at": 0.2, "zero_marks_at": 0.25},
            ],
        },
    },
}

SOLUTION = """\
def predict(x):
    return 1.0 / (1.0 + np.exp(-2.0 * x.sum(axis=1)))


train_ids, valid_ids = [1, 2, 3], [4, 5]
"""


def write_data(root: Path, n: int = 600, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = (x.sum(axis=1) + rng.normal(0, 1.0, n) > 0).astype(int)
    ids = np.arange(n)
    pub, hid = root / "public" / "toy", root / "hidden" / "toy"
    pub.mkdir(parents=True, exist_ok=True)
    hid.mkdir(parents=True, exist_ok=True)
    tr, te = ids[: n // 2], ids[n // 2 :]
    np.savez(pub / "train.npz", x=x[tr], y=y[tr], id=tr)
    np.savez(pub / "test.npz", x=x[te], id=te)
    # hidden labels in a shuffled order: the scorer must align them by id
    perm = rng.permutation(te)
    np.savez(hid / "test_labels.npz", y=y[perm], id=perm)


SETUP = "import numpy as np\n\nfrom medai.autograder.lab import check"
CHECKS = {  # grade_id -> (code, points)
    "split": ('check("split", train_ids, valid_ids)', 1),
    "toy_model": ('check("toy_model", predict)', 2),
}


def write_lab(folder: Path) -> Path:
    return write_toy_lab(folder, "toy", "Toy lab", SETUP, SOLUTION, CHECKS, TASKS)


READ_HIDDEN = """
import os, glob
FOUND = []
for pattern in ["/data/**/test_labels*", "/**/hidden/**", "{data_root}/hidden/toy/*",
                "/data/../hidden/toy/*", "/job/**/test_labels*", "/scratch/**/test_labels*"]:
    FOUND += glob.glob(pattern, recursive=pattern.startswith(("/data", "/job", "/scratch", "{data_root}")))
FOUND += [p for p in ("/data/toy/test_labels.npz", "{data_root}/hidden/toy/test_labels.npz")
          if os.path.exists(p)]
print("FOUND", sorted(set(FOUND)))
import numpy as np
def predict(x):
    for p in FOUND:
        try:
            return np.load(p)["y"].astype(float)   # would be a perfect score
        except Exception:
            pass
    return np.full(len(x), 0.5)
train_ids, valid_ids = [1, 2, 3], [4, 5]
"""

EQUAL_EVERYTHING = """
class Anything:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __lt__(self, other): return False
    def __gt__(self, other): return True
    def __len__(self): return 300
    def __float__(self): return 1.0
def predict(x):
    return Anything()
class Id:
    def __eq__(self, other): return False
    def __hash__(self): return id(self)
train_ids, valid_ids = [Id(), Id()], [Id(), Id()]
"""

# answer cells by student; the split answer stays honest unless the attack targets it
ANSWERS = {
    "honest": SOLUTION,
    "read_hidden": READ_HIDDEN,
    "wrong_shape": SOLUTION + "\n_p = predict\npredict = lambda x: np.zeros((len(x), 3))\n",
    "nan": SOLUTION + "\n_p = predict\npredict = lambda x: np.where(x[:, 0] > 0, np.nan, _p(x))\n",
    "wrong_type": SOLUTION + "\npredict = lambda x: {'p': 0.5}\n",
    "list_of_text": SOLUTION + "\npredict = lambda x: ['0.5'] * len(x)\n",
    "equal_everything": EQUAL_EVERYTHING,
    "infinite": SOLUTION + "\ndef predict(x):\n    while True:\n        pass\n",
    "forged_record": SOLUTION
    + textwrap.dedent(
        """
        import medai.autograder.plain as _plain
        _real = _plain.encode
        def _forge(value, _depth=0):
            # claim a perfect score in the record itself, and a 'disjoint' verdict as text
            return {"t": "dict", "v": {"auroc": {"t": "float", "v": 1.0},
                                       "disjoint": {"t": "str", "v": "1.0"}}}
        _plain.encode = _forge
        """
    ),
    "forged_ids": SOLUTION + "\ntrain_ids, valid_ids = {'t': 'ndarray'}, 'all different'\n",
}
ATTACKS = sorted(set(ANSWERS) - {"honest"})
# the tasks each attack targets (must score 0); the others keep the honest answer
TARGETS = {a: {"toy_model"} for a in ATTACKS}
TARGETS.update(
    forged_ids={"split"},
    forged_record={"split", "toy_model"},
    equal_everything={"split", "toy_model"},
)
