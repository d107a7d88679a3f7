"""A one-task active-learning lab (a ``model`` task with a clinician) and hostile answers to it.

:func:`write_data` lays out a toy dataset: a public practice pool with labels (fold 0) and a dev
set (fold 1), a graded pool whose labels are hidden, and a test split with hidden labels.
:func:`write_lab` writes the lab's source folder. :data:`ANSWERS` maps a student name to the answer
cell it submits: an honest one that asks for its budget, and one per way a trainee could try to
get more labels out of the grader than the budget, or labels of cases outside the pool. Every
answer prints ``GOT <n>``: the number of graded-pool labels its kernel holds at the end.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from medai.testing.example_lab import write_toy_lab

BUDGET = 30
N_POOL = 300

TASKS = {
    "lab": "toyal",
    "tasks": {
        "al_model": {
            "kind": "model",
            "dataset": "toyal",
            "dev": {
                "inputs": {"csv": "practice.csv", "where": {"fold": 1}, "drop": ["y", "fold"]},
                "labels": {"csv": "practice.csv", "where": {"fold": 1}, "column": "y"},
            },
            "test": {
                "inputs": {"csv": "test.csv", "id_column": "id"},
                "labels": {
                    "hidden": True,
                    "csv": "test_labels.csv",
                    "id_column": "id",
                    "column": "y",
                },
            },
            "output": {"type": "proba", "classes": 2},
            "metrics": [{"name": "auroc", "full_marks_at": 0.9, "zero_marks_at": 0.6}],
            "oracle": {
                "budget": BUDGET,
                "practice": {
                    "inputs": {
                        "csv": "practice.csv",
                        "where": {"fold": 0},
                        "id_column": "id",
                        "drop": ["y", "fold"],
                    },
                    "labels": {
                        "csv": "practice.csv",
                        "where": {"fold": 0},
                        "id_column": "id",
                        "column": "y",
                    },
                },
                "graded": {
                    "inputs": {"csv": "pool.csv", "id_column": "id"},
                    "labels": {
                        "hidden": True,
                        "csv": "pool_labels.csv",
                        "id_column": "id",
                        "column": "y",
                    },
                },
            },
        }
    },
}

# asks the clinician for its whole budget in three rounds, fits on what it was told
SOLUTION = """\
from sklearn.linear_model import LogisticRegression
doctor = clinician("al_model")
X = doctor.pool.set_index("id")[["x0", "x1"]]
asked, labels = [], []
for r in range(3):
    batch = [i for i in doctor.ids if i not in asked][: doctor.budget // 3]
    labels += list(doctor.ask(batch))
    asked += batch
model = LogisticRegression().fit(X.loc[asked], labels)
def predict(frame):
    return model.predict_proba(frame[["x0", "x1"]])[:, 1]
print("GOT", len(asked), "remaining", doctor.remaining)
"""


def write_data(root: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)

    def cases(prefix: str, n: int) -> pd.DataFrame:
        x = rng.normal(size=(n, 2))
        y = (x.sum(axis=1) + rng.normal(0, 0.5, n) > 0).astype(int)
        return pd.DataFrame({"id": [f"{prefix}{i:04d}" for i in range(n)], "x0": x[:, 0],
                             "x1": x[:, 1], "y": y})  # fmt: skip

    pub, hid = root / "public" / "toyal", root / "hidden" / "toyal"
    pub.mkdir(parents=True, exist_ok=True)
    hid.mkdir(parents=True, exist_ok=True)
    practice = cases("P", 400).assign(fold=lambda d: (np.arange(len(d)) >= 250).astype(int))
    practice.to_csv(pub / "practice.csv", index=False)
    pool, test = cases("Q", N_POOL), cases("T", 300)
    pool.drop(columns="y").to_csv(pub / "pool.csv", index=False)
    test.drop(columns="y").to_csv(pub / "test.csv", index=False)
    # hidden labels in a shuffled order: they are matched by id
    pool[["id", "y"]].sample(frac=1, random_state=1).to_csv(hid / "pool_labels.csv", index=False)
    test[["id", "y"]].sample(frac=1, random_state=2).to_csv(hid / "test_labels.csv", index=False)


SETUP = "import numpy as np\n\nfrom medai.autograder.lab import check, clinician"
CHECKS = {"al_model": ('check("al_model", predict)', 2)}  # grade_id -> (code, points)


def write_lab(folder: Path) -> Path:
    return write_toy_lab(folder, "toyal", "Toy active-learning lab", SETUP, SOLUTION, CHECKS, TASKS)


# the honest fit on whatever labels an attack got, appended to each attack
FIT = """
from sklearn.linear_model import LogisticRegression
X = doctor.pool.set_index("id")[["x0", "x1"]]
got = dict(zip(asked, labels))
print("GOT", len([k for k in got if str(k).startswith("Q")]))  # graded-pool labels held
if len(set(got.values())) < 2:
    got = {doctor.ids[0]: 0, doctor.ids[1]: 1}  # nothing learnt: a coin of a model
model = LogisticRegression().fit(X.loc[list(got)], list(got.values()))
def predict(frame):
    return model.predict_proba(frame[["x0", "x1"]])[:, 1]
"""

# more than the budget at once: refused as a whole, then the budget, then one more
OVER_BUDGET = """
from medai.autograder.lab import OracleRefused
doctor = clinician("al_model")
asked, labels, refusals = [], [], []
for batch in (doctor.ids[: 2 * doctor.budget], doctor.ids[: doctor.budget], doctor.ids[-1:]):
    try:
        labels += list(doctor.ask(batch))
        asked += list(batch)
    except OracleRefused as exc:
        refusals.append(str(exc))
print("REFUSED", len(refusals), refusals[0][:200] if refusals else "")
"""

# a fresh clinician per id, all 300 of them: the budget belongs to the run, not to the object
ONE_BY_ONE = """
from medai.autograder.lab import OracleRefused
asked, labels, refusals = [], [], 0
for i in clinician("al_model").ids:
    doctor = clinician("al_model")
    try:
        labels += list(doctor.ask([i]))
        asked.append(i)
    except OracleRefused:
        refusals += 1
print("REFUSED", refusals)
"""

# ids that are not in the pool: the test cases, made-up ids, ids of another type
OUTSIDE_POOL = """
import pandas as pd
from medai.autograder.lab import OracleRefused, data_dir
doctor = clinician("al_model")
test_ids = pd.read_csv(data_dir("toyal") / "test.csv")["id"].tolist()
asked, labels, refusals = [], [], []
for batch in (test_ids[:10], ["../../hidden/toyal/pool_labels.csv"], [{"id": 1}], [True],
              doctor.ids[:1] + test_ids[:1]):
    try:
        labels += list(doctor.ask(batch))
        asked += list(batch)
    except OracleRefused as exc:
        refusals.append(str(exc))
print("REFUSED", len(refusals), " | ".join(r[:90] for r in refusals))
doctor = clinician("al_model")
"""

# requests written straight to the result pipe: all ids at once, another task, malformed and
# hostile lines; then the answers are read back by hand
FORGED = """
import json, os
fd_out = int(os.environ["MEDAI_RESULT_FD"])
answers = open(int(os.environ["MEDAI_ORACLE_FD"]), encoding="utf-8", closefd=False)
doctor = clinician("al_model")
lines = [
    {"type": "oracle", "task": "al_model", "ids": doctor.ids},
    {"type": "oracle", "task": "other_task", "ids": doctor.ids[:1]},
    {"type": "oracle", "task": "al_model", "ids": "Q0001"},
    {"type": "oracle", "task": "al_model", "ids": [[["Q0001"]]]},
    {"type": "oracle", "task": "al_model"},
    {"type": "oracle", "ids": doctor.ids[:1]},
    {"type": "oracle", "task": "al_model", "ids": [1.5, None, 10**30]},
]
for rec in lines:
    os.write(fd_out, (json.dumps(rec) + "\\n").encode())
# lines that are not records at all, and one nested deeper than any parser allows
os.write(fd_out, b'{"type": "oracle", "task": "al_model", "ids": [' + b"[" * 100000 + b"\\n")
os.write(fd_out, b'not json but "oracle"\\n')
os.write(fd_out, b'["oracle"]\\n')
replies = [json.loads(answers.readline()) for _ in lines]  # one reply per well-formed request
print("REPLIES", [sorted(r) for r in replies])
asked = [i for r, rec in zip(replies, lines) if "labels" in r for i in rec["ids"]]
labels = [x for r in replies if "labels" in r for x in r["labels"]]
# the line still works after all that: one honest question gets one answer
labels += list(doctor.ask(doctor.ids[:1]))
asked += doctor.ids[:1]
print("STILL ANSWERS", len(labels))
"""

READ_HIDDEN = """
import glob, os
FOUND = glob.glob("/*/hidden/**") + glob.glob("{data_root}/hidden/toyal/*")
for top in ("/data", "/job", "/scratch", "/tmp"):
    FOUND += glob.glob(top + "/**/pool_labels*", recursive=True)
print("FOUND", sorted(set(FOUND)))
doctor = clinician("al_model")
asked, labels = [], []
"""

ANSWERS = {
    "honest": SOLUTION,
    "over_budget": OVER_BUDGET + FIT,
    "one_by_one": ONE_BY_ONE + FIT,
    "outside_pool": OUTSIDE_POOL + FIT,
    "forged": FORGED + FIT,
    "read_hidden": READ_HIDDEN + FIT,
}
ATTACKS = sorted(set(ANSWERS) - {"honest"})


def answer_cell(student: str, data_root: Path) -> str:
    return textwrap.dedent(ANSWERS[student]).replace("{data_root}", str(data_root))
