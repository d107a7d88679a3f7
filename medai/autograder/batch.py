"""``medai grade LAB``: grade a lab's collected submissions, in parallel, resumably.

One small named step per stage, plain data between them::

    open_course -> prepare_lab (task file, gradebook cells, grader inputs, hidden labels)
                -> reference (run the solution notebook once: expected values)
                -> grade_submission x N (sanitize -> sandbox -> score)   [worker threads]
                -> store (autograded notebook, gradebook, result JSON last, atomically)

State lives in ``<course>/grading/<lab>/``: ``inputs/`` (grader-drawn inputs, never changing once
drawn), ``reference.json``, ``results/<student>.json`` (one per finished submission; its presence
with the same submission fingerprint means "done", so an interrupted batch resumes) and
``logs/<student>.log``. Nothing under the course directory is visible to a sandbox.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

from medai.autograder import GradingError, plain
from medai.autograder.oracle import OracleServer, PoolLabels
from medai.autograder.policy import Policy
from medai.autograder.sandbox import Limits, SandboxBackend, SandboxJob, SandboxResult
from medai.autograder.sanitize import (
    InvalidSubmission,
    NotebookInfo,
    load_submission,
    read_notebook_info,
    sanitize,
    strip_hidden_tests,
)
from medai.autograder.scoring import (
    ModelTruth,
    TaskScore,
    score_function,
    score_model,
    score_predict,
    score_property,
    score_value,
)
from medai.autograder.tasks import (
    ArgSpec,
    FunctionTask,
    ModelTask,
    PredictTask,
    PropertyTask,
    TaskFile,
    ValueTask,
    load_tasks,
)

RESULT_VERSION = 1


# --------------------------------------------------------------------------- course and lab


@dataclass
class Course:
    root: Path
    db_url: str
    course_id: str
    source: Path
    release: Path
    submitted: Path
    autograded: Path


def open_course(course_dir: Path, *, course_id: str | None = None) -> Course:
    """Read ``<course_dir>/nbgrader_config.py`` (if any) the way nbgrader does.

    With ``course_id`` given, the config file is *not* read and nbgrader's default folder names
    apply: the file is Python, and whoever can write the course folder (the formgrader's
    sandbox) must not get code run by a trusted process such as the grading service.
    """
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    if not shutil.which("alembic"):  # nbgrader's Gradebook runs `alembic` from PATH
        os.environ["PATH"] = (
            f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        )
    root = Path(course_dir).resolve()
    if not root.is_dir():
        raise GradingError(f"course directory {root} does not exist (pass --course DIR)")
    cfg = Config()
    if course_id is not None:
        cfg.CourseDirectory.course_id = course_id
    elif (root / "nbgrader_config.py").exists():
        cfg = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    cd = CourseDirectory(config=cfg)
    cd.root = str(root)
    return Course(
        root=root,
        db_url=cd.db_url,
        course_id=cd.course_id or "default_course",
        source=root / cd.source_directory,
        release=root / cd.release_directory,
        submitted=root / cd.submitted_directory,
        autograded=root / cd.autograded_directory,
    )


@dataclass
class Lab:
    id: str
    tasks: TaskFile
    notebooks: list[NotebookInfo]
    release_files: list[Path]  # non-notebook files released with the lab
    release_tags: set[str]
    duedate: dt.datetime | None
    state: Path
    inputs_dir: Path
    cases: dict[str, list[dict]] = field(default_factory=dict)
    labels: dict[str, dict[str, int]] = field(default_factory=dict)
    truth: dict[str, ModelTruth] = field(default_factory=dict)
    oracles: dict[str, PoolLabels] = field(default_factory=dict)  # hidden pool labels by task
    expected: dict[str, Any] = field(default_factory=dict)
    reference_report: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _atomic_write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _draw(spec: ArgSpec, rng: np.random.Generator) -> Any:
    if spec.uniform is not None:
        x = float(rng.uniform(*spec.uniform))
        return round(x, spec.decimals) if spec.decimals is not None else x
    if spec.integers is not None:
        return int(rng.integers(spec.integers[0], spec.integers[1] + 1))
    return spec.choice[int(rng.integers(len(spec.choice)))]


def _read_table(folder: Path, table: str) -> Any:
    import pandas as pd

    for ext, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv)):
        if (folder / f"{table}{ext}").exists():
            return reader(folder / f"{table}{ext}")
    raise GradingError(f"table '{table}' (.csv or .parquet) not found in {folder}")


def hidden_cases(source: str) -> list[dict]:
    """``HIDDEN_CASES = [...]`` inside a check cell's hidden-test block, read as a literal.

    The block is parsed, never executed, and never reaches a sandbox except as inputs.
    """
    import ast
    import re

    cases: list[dict] = []
    for block in re.findall(r"### BEGIN HIDDEN TESTS(.*?)### END HIDDEN TESTS", source, re.S):
        try:
            tree = ast.parse(block)
        except SyntaxError as exc:
            raise GradingError(f"hidden tests block is not valid Python: {exc}") from None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "HIDDEN_CASES" for t in node.targets
            ):
                value = ast.literal_eval(node.value)
                if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                    raise GradingError("HIDDEN_CASES must be a list of keyword-argument dicts")
                cases += value
    return cases


def prepare_lab(course: Course, lab_id: str, data_root: Path | None) -> Lab:
    """Everything about a lab that does not depend on a submission."""
    from nbgrader.api import Gradebook, MissingEntry

    src = course.source / lab_id
    if not src.is_dir():
        raise GradingError(f"no source folder for lab '{lab_id}' at {src}")
    tasks = load_tasks(src / "tasks.yaml")
    release = course.release / lab_id
    if not release.is_dir():
        raise GradingError(
            f"{release} does not exist: run `nbgrader generate_assignment {lab_id}` first"
        )
    with Gradebook(course.db_url, course.course_id) as gb:
        try:
            assignment = gb.find_assignment(lab_id)
        except MissingEntry:
            raise GradingError(
                f"lab '{lab_id}' is not in the gradebook {course.db_url}; run "
                f"`nbgrader generate_assignment {lab_id}`"
            ) from None
        notebooks = [read_notebook_info(gb, nb.name, lab_id) for nb in assignment.notebooks]
        duedate = assignment.duedate
    graded = {g for nb in notebooks for g, c in nb.cells.items() if c.grade}
    missing = sorted(set(tasks.tasks) - graded)
    if missing:
        raise GradingError(
            f"tasks {missing} in {src / 'tasks.yaml'} have no graded cell with that grade_id; "
            "the cell calling check('<id>', ...) must be an autograded, read-only cell with "
            "the same grade_id (see labs/README.md)"
        )
    release_files = [
        p for p in sorted(release.iterdir()) if p.suffix != ".ipynb" and not p.name.startswith(".")
    ]
    tags: set[str] = set()
    for p in release.glob("*.ipynb"):
        for cell in nbformat.read(p, as_version=4).cells:
            tags |= set(cell.get("metadata", {}).get("tags", []))
    state = course.root / "grading" / lab_id
    lab = Lab(lab_id, tasks, notebooks, release_files, tags, duedate, state, state / "inputs")
    # grader-drawn inputs: drawn once per lab with a secret seed, then kept (resume, reference)
    seed_file = state / "seed"
    if not seed_file.exists():
        _atomic_write(seed_file, str(secrets.randbits(63)))
    seed = int(seed_file.read_text())
    for tid, task in tasks.tasks.items():
        if isinstance(task, FunctionTask):
            path = lab.inputs_dir / f"{tid}.json"
            if not path.exists():
                rng = np.random.default_rng(
                    [seed, int(hashlib.sha256(tid.encode()).hexdigest()[:8], 16)]
                )
                cases = [
                    {k: _draw(s, rng) for k, s in task.args.items()} for _ in range(task.n_cases)
                ]
                cell = next(nb.cells[tid] for nb in notebooks if tid in nb.cells)
                cases += hidden_cases(cell.source)
                _atomic_write(path, json.dumps(cases))
            lab.cases[tid] = json.loads(path.read_text())
        elif isinstance(task, PredictTask):
            if data_root is None:
                raise GradingError(
                    f"task '{tid}' is scored on hidden labels: pass --data ROOT (the folder with "
                    "public/ and hidden/) or set MEDAI_DATA_ROOT"
                )
            table = _read_table(data_root / "hidden" / task.dataset, task.hidden_labels)
            lab.labels[tid] = {
                str(i): int(v)
                for i, v in zip(table[task.id_column], table[task.target], strict=True)
            }
        elif isinstance(task, ModelTask):
            lab.truth[tid] = model_truth(tid, task, data_root)
            if task.oracle is not None:
                lab.oracles[tid] = oracle_pool(tid, task, data_root)
    scored = sorted(
        {t.dataset for t in tasks.tasks.values() if isinstance(t, PredictTask | ModelTask)}
    )
    lab.warnings += unkeyed_warnings(scored, data_root)
    return lab


def unkeyed_warnings(datasets: list[str], data_root: Path | None) -> list[str]:
    """A warning for each dataset whose hidden split anyone can regenerate from the public seed
    (generated without the deployment's data key): grades on it reward looking labels up."""
    from medai.synthetic.core import hidden_keying

    if data_root is None:
        return []
    return [
        f"the hidden split of '{name}' under {data_root} follows from the public seed (it was "
        "generated without a data key), so a submission can regenerate its labels; generate it "
        f"with the deployment's key (`medai up`, or `medai data generate {name} --secret-file "
        f"{data_root.parent / 'secrets' / 'data.key'} --out {data_root}`)"
        for name in datasets
        if hidden_keying(name, data_root) == "public-seed"
    ]


def _oracle_server(lab: Lab) -> OracleServer | None:
    """A fresh clinician for one sandbox run (budgets start full), if the lab has one."""
    return OracleServer(lab.oracles) if lab.oracles else None


def oracle_pool(tid: str, task: ModelTask, data_root: Path | None) -> PoolLabels:
    """The hidden labels of a task's graded pool, by id, for the clinician (trusted side)."""
    from medai.autograder.modeldata import load_source

    assert task.oracle is not None and data_root is not None  # model_truth checked the root
    public = data_root / "public" / task.dataset
    hidden = data_root / "hidden" / task.dataset
    try:
        pool = load_source(task.oracle.graded.inputs, public)
        labels = load_source(task.oracle.graded.labels, public, hidden)
    except (OSError, KeyError, ValueError) as exc:
        raise GradingError(
            f"task '{tid}': cannot load the clinician's graded pool of dataset "
            f"'{task.dataset}' under {data_root}: {exc}. Check tasks.yaml (oracle.graded)"
        ) from None
    if pool.ids is None or labels.ids is None:
        raise GradingError(
            f"task '{tid}': oracle.graded needs ids on both inputs and labels (id_column), so "
            "the clinician can answer by id"
        )
    by_id = dict(zip(labels.ids, np.asarray(labels.value).tolist(), strict=True))
    missing = [i for i in pool.ids if i not in by_id]
    if missing:
        raise GradingError(
            f"task '{tid}': {len(missing)} case(s) of the clinician's pool have no hidden label "
            f"(e.g. {missing[0]}); regenerate the dataset"
        )
    return PoolLabels({i: by_id[i] for i in pool.ids}, task.oracle.budget)


def model_truth(tid: str, task: ModelTask, data_root: Path | None) -> ModelTruth:
    """The hidden test labels of a model task, aligned to its public test inputs (trusted side)."""
    from medai.autograder.modeldata import align, load_groups, load_source

    if data_root is None:
        raise GradingError(
            f"task '{tid}' is scored on hidden labels: pass --data ROOT (the folder with "
            "public/ and hidden/) or set MEDAI_DATA_ROOT"
        )
    public = data_root / "public" / task.dataset
    hidden = data_root / "hidden" / task.dataset
    try:
        inputs = load_source(task.test.inputs, public)
        labels = load_source(task.test.labels, public, hidden)
        aligned = align(inputs, labels, f"task '{tid}' test split")
        groups = load_groups(task.test, inputs, public)
    except (OSError, KeyError, ValueError) as exc:
        raise GradingError(
            f"task '{tid}': cannot load the test split of dataset '{task.dataset}' under "
            f"{data_root}: {exc}. Check tasks.yaml (test.inputs / test.labels) and that "
            f"`medai data generate {task.dataset}` wrote both public/ and hidden/"
        ) from None
    if task.members is None:
        return ModelTruth(aligned, len(inputs.value), groups)
    try:
        m_inputs = load_source(task.members.inputs, public)
        m_labels = align(
            m_inputs, load_source(task.members.labels, public), f"task '{tid}' members"
        )
    except (OSError, KeyError, ValueError) as exc:
        raise GradingError(
            f"task '{tid}': cannot load the members split of dataset '{task.dataset}' under "
            f"{data_root}: {exc}. Check tasks.yaml (members.inputs / members.labels)"
        ) from None
    return ModelTruth(
        aligned, len(inputs.value), groups, members_labels=m_labels, n_members=len(m_inputs.value)
    )


# --------------------------------------------------------------------------- one run


def _job_dir(tmp_root: Path, lab: Lab, notebooks: dict[str, nbformat.NotebookNode]) -> Path:
    job = Path(tempfile.mkdtemp(prefix="job-", dir=tmp_root))
    (job / "files").mkdir()
    for p in lab.release_files:
        if p.is_dir():
            shutil.copytree(p, job / "files" / p.name)
        else:
            shutil.copy(p, job / "files" / p.name)
    for name, nb in notebooks.items():
        nbformat.write(nb, job / "files" / f"{name}.ipynb")
    if lab.inputs_dir.exists():
        shutil.copytree(lab.inputs_dir, job / "inputs")
    else:
        (job / "inputs").mkdir()
    spec = {
        "notebooks": [f"{n}.ipynb" for n in notebooks],
        "tasks": lab.tasks.model_dump(mode="json"),
    }
    (job / "job.json").write_text(json.dumps(spec))
    for p in job.rglob("*"):  # the sandbox user is not root inside: make the job readable
        p.chmod(0o755 if p.is_dir() else 0o644)
    job.chmod(0o755)
    return job


def _checks(res: SandboxResult, nb_name: str, cell_index: int) -> dict[str, dict]:
    """The last check record per task made by cell ``cell_index`` of ``nb_name``."""
    out: dict[str, dict] = {}
    for rec in res.records:
        if (
            rec.get("type") == "check"
            and rec.get("nb") == f"{nb_name}.ipynb"
            and rec.get("cell") == cell_index
        ):
            if isinstance(rec.get("task"), str):
                out[rec["task"]] = rec
    return out


def _executed(res: SandboxResult) -> dict[tuple[str, int], dict]:
    return {
        (rec.get("nb"), rec.get("index")): rec for rec in res.records if rec.get("type") == "cell"
    }


def reference(
    lab: Lab,
    course: Course,
    backend: SandboxBackend,
    data_dir: Path | None,
    tmp_root: Path,
    limits: Limits,
) -> None:
    """Run the source (solution) notebooks once; keep the expected value of every task."""
    digest = hashlib.sha256()
    sources: dict[str, nbformat.NotebookNode] = {}
    for info in lab.notebooks:
        path = course.source / lab.id / f"{info.name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            cell.source = strip_hidden_tests(cell.source)
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        sources[info.name] = nb
        digest.update(path.read_bytes())
    digest.update((course.source / lab.id / "tasks.yaml").read_bytes())
    for p in sorted(lab.inputs_dir.glob("*.json")):
        digest.update(p.read_bytes())
    if data_dir is not None:
        for p in sorted(data_dir.parent.glob("manifests/*.sha256")):
            digest.update(p.read_bytes())
    fingerprint = digest.hexdigest()
    ref_file = lab.state / "reference.json"
    if ref_file.exists():
        saved = json.loads(ref_file.read_text())
        if saved.get("fingerprint") == fingerprint:
            lab.expected = {k: plain.decode(v) for k, v in saved["expected"].items()}
            lab.reference_report = saved.get("report", {})
            return
    job = _job_dir(tmp_root, lab, sources)
    oracle = _oracle_server(lab)
    try:
        res = backend.run(
            SandboxJob(
                job, data_dir, limits, name="reference", oracle=oracle.answer if oracle else None
            )
        )
    finally:
        shutil.rmtree(job, ignore_errors=True)
    expected, report = {}, {}
    for info in lab.notebooks:
        nb = sources[info.name]
        for idx, cell in enumerate(nb.cells):
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid in lab.tasks.tasks:
                rec = _checks(res, info.name, idx).get(gid)
                if rec is not None and "value" in rec:
                    expected[gid] = rec["value"]
    for tid, task in lab.tasks.tasks.items():
        if tid not in expected:
            raise GradingError(
                f"the reference solution of '{lab.id}' recorded no value for task '{tid}' "
                f"(sandbox status {res.status}); fix the lab. Sandbox log:\n{res.log[-3000:]}"
            )
        if isinstance(task, ModelTask | PropertyTask):
            # the reference is scored like a submission; below full marks is reported, not fatal
            s = _score_task(lab, tid, {"value": expected[tid]})
            report[tid] = (
                s.message
                if s.fraction >= 1.0
                else (f"WARNING: the reference solution earns {s.fraction:.0%}: {s.message}")
            )
        if isinstance(task, PredictTask):
            s = score_predict(task, plain.decode(expected[tid]), lab.labels[tid])
            report[tid] = s.message
            if s.fraction < 1.0:
                raise GradingError(
                    f"the reference solution of '{lab.id}' does not earn full marks on '{tid}': {s.message}"
                )
    _atomic_write(
        ref_file, json.dumps({"fingerprint": fingerprint, "expected": expected, "report": report})
    )
    lab.expected = {k: plain.decode(v) for k, v in expected.items()}
    lab.reference_report = report


# --------------------------------------------------------------------------- one submission


def submission_fingerprint(sub_dir: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(sub_dir.rglob("*")):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            h.update(f"{p.relative_to(sub_dir)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _score_task(lab: Lab, tid: str, rec: dict | None) -> TaskScore:
    task = lab.tasks.tasks[tid]
    if rec is None:
        return TaskScore(0.0, "no answer was recorded (did the cell run?)")
    if "error" in rec:
        return TaskScore(0.0, f"the answer could not be recorded: {str(rec['error'])[:300]}")
    try:
        got = plain.decode(rec.get("value"))
    except plain.PlainError as exc:
        return TaskScore(0.0, f"malformed answer: {exc}")
    if isinstance(task, ValueTask):
        return score_value(task, lab.expected[tid], got)
    if isinstance(task, FunctionTask):
        return score_function(task, lab.cases[tid], lab.expected[tid], got)
    if isinstance(task, ModelTask):
        return score_model(task, got, lab.truth[tid])
    if isinstance(task, PropertyTask):
        return score_property(task, got)
    return score_predict(task, got, lab.labels[tid])


def _answer_text(nb: nbformat.NotebookNode, gid: str) -> str | None:
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == gid:
            return cell.source.strip()
    return None


def _outputs(rec: dict | None) -> list:
    outs = []
    if rec is None:
        return outs
    for name in ("stdout", "stderr"):
        text = rec.get(name)
        if isinstance(text, str) and text:
            outs.append(nbformat.v4.new_output("stream", name=name, text=text[:20_000]))
    return outs


def grade_submission(
    lab: Lab,
    course: Course,
    student: str,
    backend: SandboxBackend,
    policy: Policy,
    data_dir: Path | None,
    tmp_root: Path,
) -> tuple[dict, dict[str, nbformat.NotebookNode]]:
    """Grade one submission; return its result record and its autograded notebooks."""
    sub_dir = course.submitted / student / lab.id
    t0 = time.monotonic()
    result: dict[str, Any] = {
        "version": RESULT_VERSION,
        "student": student,
        "lab": lab.id,
        "fingerprint": submission_fingerprint(sub_dir),
        "status": "graded",
        "messages": [],
        "tamper": [],
        "tasks": {},
        "notebooks": {},
    }
    ts_file = sub_dir / "timestamp.txt"
    timestamp = None
    if ts_file.exists():
        from nbgrader.utils import parse_utc

        try:
            timestamp = parse_utc(ts_file.read_text().strip())
        except ValueError:
            result["messages"].append("timestamp.txt is unreadable; treated as on time")
    result["timestamp"] = timestamp.isoformat() if timestamp else None
    known = {f"{nb.name}.ipynb" for nb in lab.notebooks} | {p.name for p in lab.release_files}
    known |= {"timestamp.txt", "submission_secret.txt", "medai_receipt.json"}  # nbgrader, keeper
    extra = sorted(
        str(p.relative_to(sub_dir))
        for p in sub_dir.rglob("*")
        if p.is_file() and p.relative_to(sub_dir).parts[0] not in known
    )
    if extra:
        shown = ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else "")
        result["messages"].append(f"{len(extra)} extra file(s) ignored: {shown}")
    sanitized, runnable = {}, {}
    for info in lab.notebooks:
        path = sub_dir / f"{info.name}.ipynb"
        try:
            nb = load_submission(path, int(policy.submission.notebook_mb * 1e6))
        except InvalidSubmission as exc:
            result["notebooks"][info.name] = {"status": "invalid", "message": str(exc)}
            result["messages"].append(str(exc))
            if not path.exists():
                others = sorted(p.name for p in sub_dir.glob("*.ipynb"))
                if others:
                    result["messages"].append(f"notebooks found instead: {others} (renamed?)")
            continue
        s = sanitize(nb, info, lab.release_tags)
        sanitized[info.name] = s
        runnable[info.name] = s.nb
        result["notebooks"][info.name] = {"status": "ok"}
        result["tamper"] += [dict(e.as_dict(), notebook=info.name) for e in s.events]
    res = None
    if runnable:
        job = _job_dir(tmp_root, lab, runnable)
        oracle = _oracle_server(lab)
        try:
            res = backend.run(
                SandboxJob(
                    job,
                    data_dir,
                    policy.limits.to_limits(),
                    name=student,
                    oracle=oracle.answer if oracle else None,
                )
            )
        finally:
            shutil.rmtree(job, ignore_errors=True)
        if oracle is not None:  # how many labels the notebook asked the clinician for
            result["oracle"] = oracle.usage()
        result["sandbox"] = {
            "status": res.status,
            "returncode": res.returncode,
            "wall_s": round(res.wall_s, 3),
            "malformed_lines": res.malformed_lines,
            "exec_s": round(
                sum(
                    float(r.get("seconds", 0) or 0)
                    for r in res.records
                    if r.get("type") == "cell" and isinstance(r.get("seconds"), int | float)
                ),
                3,
            ),
            "notes": res.notes,
        }
        if res.status != "ok":
            why = {
                "timeout": f"the notebook ran past the {policy.limits.wall_s:g} s limit and was stopped",
                "crashed": "the notebook's kernel died before finishing (a crash, a memory or process limit, or os._exit)",
                "output-limit": "the notebook produced more output than allowed and was stopped",
            }[res.status]
            result["messages"].append(why)
            result["status"] = res.status
    else:
        result["status"] = "invalid"
    executed = _executed(res) if res else {}
    autograded: dict[str, nbformat.NotebookNode] = {}
    for info in lab.notebooks:
        s = sanitized.get(info.name)
        for gid, cinfo in info.cells.items():
            if not cinfo.grade:
                continue
            entry: dict[str, Any] = {"notebook": info.name, "max": cinfo.points}
            if gid not in lab.tasks.tasks:
                if cinfo.cell_type == "markdown" or cinfo.solution:
                    entry.update(score=None, message="graded by hand")
                    if s is None:
                        entry.update(score=0.0, message=result["notebooks"][info.name]["message"])
                    elif cinfo.solution and _answer_text(s.nb, gid) == cinfo.source.strip():
                        entry.update(score=0.0, message="no answer given")  # as nbgrader does
                else:
                    entry.update(
                        score=0.0, message="graded cell without a task in tasks.yaml: not scored"
                    )
                result["tasks"][gid] = entry
                continue
            if s is None:
                entry.update(score=0.0, message=result["notebooks"][info.name]["message"])
            elif gid in s.tampered and policy.on_tamper == "zero":
                entry.update(
                    score=0.0,
                    message="this read-only graded cell was tampered with: 0 points (see report)",
                )
            elif (info.name + ".ipynb", s.grade_cells[gid]) not in executed:
                entry.update(score=0.0, message="this graded cell did not run")
            else:
                rec = _checks(res, info.name, s.grade_cells[gid]).get(gid)
                ts = _score_task(lab, gid, rec)
                entry.update(
                    score=round(ts.fraction * (cinfo.points or 0.0), 4), message=ts.message
                )
            entry["tampered"] = bool(s and gid in s.tampered)
            result["tasks"][gid] = entry
        if s is not None:
            nb = s.nb
            for idx, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                rec = executed.get((info.name + ".ipynb", idx))
                gid = cell.metadata.get("nbgrader", {}).get("grade_id")
                if gid in result["tasks"] and gid in lab.tasks.tasks:
                    t = result["tasks"][gid]
                    text = f"[{gid}] {t['score']:g} / {t['max']:g} points: {t['message']}\n"
                    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
                else:
                    cell.outputs = _outputs(rec)
                    if rec and not rec.get("ok") and isinstance(rec.get("error"), str):
                        cell.outputs.append(
                            nbformat.v4.new_output(
                                "stream", name="stderr", text=rec["error"][:2000] + "\n"
                            )
                        )
                if rec is not None:
                    cell.execution_count = idx + 1
            autograded[info.name] = nb
    auto = sum(t["score"] or 0.0 for t in result["tasks"].values())
    result["auto_score"] = round(auto, 4)
    result["max_score"] = sum(t["max"] or 0.0 for t in result["tasks"].values())
    due = lab.duedate or policy.due.get(lab.id)
    late_frac = 0.0
    if due is not None and timestamp is not None:
        due_utc = due if due.tzinfo else due.replace(tzinfo=dt.UTC)
        ts_utc = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=dt.UTC)
        seconds = (ts_utc - due_utc).total_seconds()
        late_frac = policy.late_fraction(student, lab.id, seconds)
        if late_frac:
            result["messages"].append(
                f"late by {seconds / 3600:.1f} h: {late_frac:.0%} of the autograded score deducted"
            )
    result["late_fraction"] = late_frac
    result["late_penalty"] = round(late_frac * auto, 4)
    result["seconds"] = round(time.monotonic() - t0, 3)
    lines = []
    for rec in res.records if res else []:
        if rec.get("type") == "cell":
            state = "ok" if rec.get("ok") else f"error: {str(rec.get('error'))[:300]}"
            lines.append(f"[{rec.get('nb')} cell {rec.get('index')}] {state}")
            for stream in ("stdout", "stderr"):
                if isinstance(rec.get(stream), str) and rec[stream]:
                    lines.append(rec[stream][:2000].rstrip())
    raw = res.log[-20_000:] if res else ""
    result["log"] = "\n".join(lines) + "\n--- raw sandbox output ---\n" + raw
    return result, autograded


# --------------------------------------------------------------------------- storing


_GB_LOCK = threading.Lock()


def write_gradebook(course: Course, lab: Lab, result: dict) -> None:
    """Write one result's scores and late penalty into the nbgrader gradebook (idempotent)."""
    import warnings

    from nbgrader.api import Gradebook

    student = result["student"]
    with _GB_LOCK, warnings.catch_warnings(), Gradebook(course.db_url, course.course_id) as gb:
        warnings.simplefilter("ignore")  # nbgrader's add_submission trips SQLAlchemy warnings
        gb.update_or_create_student(student)
        kwargs = {"timestamp": result["timestamp"]} if result.get("timestamp") else {}
        gb.update_or_create_submission(lab.id, student, **kwargs)
        per_nb: dict[str, float] = {}
        for gid, t in result["tasks"].items():
            grade = gb.find_grade(gid, t["notebook"], lab.id, student)
            grade.auto_score = t["score"]
            grade.needs_manual_grade = (
                t["score"] is None or bool(t.get("tampered")) or grade.manual_score is not None
            )
            per_nb[t["notebook"]] = per_nb.get(t["notebook"], 0.0) + (t["score"] or 0.0)
        for info in lab.notebooks:
            nb = gb.find_submission_notebook(info.name, lab.id, student)
            nb.late_submission_penalty = (
                round(result["late_fraction"] * per_nb.get(info.name, 0.0), 4) or None
            )
        gb.db.commit()


def store(
    course: Course, lab: Lab, result: dict, autograded: dict[str, nbformat.NotebookNode]
) -> None:
    """Autograded notebooks, gradebook, log, and last (atomically) the result file."""
    student = result["student"]
    out_dir = course.autograded / student / lab.id
    for name, nb in autograded.items():
        _atomic_write(out_dir / f"{name}.ipynb", nbformat.writes(nb))
    # nbgrader's generate/release_feedback read these beside the autograded notebooks
    for keep in ("timestamp.txt", "submission_secret.txt"):
        src = course.submitted / student / lab.id / keep
        if src.exists():
            _atomic_write(out_dir / keep, src.read_bytes())
    write_gradebook(course, lab, result)
    log = result.pop("log", "")
    lines = [
        f"{student} {lab.id}: {result['status']} {result['auto_score']:g}/{result['max_score']:g}"
    ]
    lines += [f"message: {m}" for m in result["messages"]]
    lines += [
        f"tamper: {e['notebook']}:{e['cell']}: {e['kind']}: {e['detail']}" for e in result["tamper"]
    ]
    lines += [
        f"task {k}: {v['score']}/{v['max']} {v['message']}" for k, v in result["tasks"].items()
    ]
    lines += [
        f"clinician {k}: {u['labels']} label(s) given, {u['requests']} request(s), "
        f"{u['refused']} refused"
        for k, u in result.get("oracle", {}).items()
    ]
    lines += ["--- cells ---", log]
    _atomic_write(lab.state / "logs" / f"{student}.log", "\n".join(lines) + "\n")
    _atomic_write(lab.state / "results" / f"{student}.json", json.dumps(result, indent=1))


# --------------------------------------------------------------------------- the batch


@dataclass(frozen=True)
class BatchEvent:
    """What a running batch reports to ``grade_lab(on_event=...)`` (the grading service's progress).

    ``planned``: the submissions to grade (``todo``) and those already done (``skipped``);
    ``reference``: the solution notebook runs; ``started``/``finished``: one submission, with its
    stored result (without the log) when finished.
    """

    kind: str  # planned | reference | started | finished
    student: str | None = None
    todo: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    result: dict | None = None


@dataclass
class BatchSummary:
    lab: str
    graded: list[dict]
    skipped: list[str]
    seconds: float
    reference: dict[str, str]
    warnings: list[str] = field(default_factory=list)


def refuse_links(course: Course, lab_id: str) -> None:
    """Refuse to grade while a symbolic link sits where the grader reads or writes.

    The course folder is writable from the formgrader's sandbox. A link planted there would make
    this trusted process write through it (autograded notebooks, results, logs, the gradebook) or
    copy a host file into a submission's sandbox (release files).
    """
    tops = [
        course.submitted,
        course.autograded,
        course.root / "grading",
        course.source / lab_id,
        course.release / lab_id,
    ]
    if course.db_url.startswith("sqlite:///"):
        tops.append(Path(course.db_url.removeprefix("sqlite:///")))
    for top in tops:
        found = [top] if top.is_symlink() else []
        if not found and top.is_dir():
            for folder, dirs, files in os.walk(top):
                found += [Path(folder, n) for n in dirs + files if Path(folder, n).is_symlink()]
                if found:
                    break
        if found:
            raise GradingError(
                f"{found[0]} is a symbolic link; the grader does not read or write through links "
                f"in the course folder. Remove it (and ask who put it there), then grade again"
            )


def list_students(course: Course, lab_id: str) -> list[str]:
    if not course.submitted.is_dir():
        return []
    return sorted(p.parent.name for p in course.submitted.glob(f"*/{lab_id}") if p.is_dir())


def grade_lab(
    course_dir: Path | Course,
    lab_id: str,
    *,
    backend: SandboxBackend,
    policy: Policy,
    data_root: Path | None = None,
    workers: int | None = None,
    students: list[str] | None = None,
    force: bool = False,
    progress: bool = True,
    on_event: Callable[[BatchEvent], None] | None = None,
) -> BatchSummary:
    """Grade the collected submissions of ``lab_id`` (see the module docstring).

    ``course_dir`` is a course folder (its nbgrader_config.py is read) or an opened
    :class:`Course`. One batch per lab at a time: a second ``medai grade`` of the same lab is
    refused. ``on_event`` (called from worker threads) receives :class:`BatchEvent` progress.
    """
    import fcntl

    course = course_dir if isinstance(course_dir, Course) else open_course(course_dir)
    if not (course.source / lab_id).is_dir():
        raise GradingError(f"no source folder for lab '{lab_id}' at {course.source / lab_id}")
    refuse_links(course, lab_id)
    state = course.root / "grading" / lab_id
    state.mkdir(parents=True, exist_ok=True)
    with open(state / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GradingError(
                f"another `medai grade {lab_id}` is running on this course ({state}); wait for it"
            ) from None
        return _grade_lab(
            course,
            lab_id,
            backend=backend,
            policy=policy,
            data_root=data_root,
            workers=workers,
            students=students,
            force=force,
            progress=progress,
            on_event=on_event or (lambda event: None),
        )


def _grade_lab(
    course: Course,
    lab_id: str,
    *,
    backend: SandboxBackend,
    policy: Policy,
    data_root: Path | None,
    workers: int | None,
    students: list[str] | None,
    force: bool,
    progress: bool,
    on_event: Callable[[BatchEvent], None],
) -> BatchSummary:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    t0 = time.monotonic()
    data_root = Path(data_root).resolve() if data_root else None
    data_dir = data_root / "public" if data_root else None
    if data_dir is not None and not data_dir.is_dir():
        raise GradingError(f"{data_dir} does not exist: --data must be the folder holding public/")
    lab = prepare_lab(course, lab_id, data_root)
    everyone = list_students(course, lab_id)
    if students:
        unknown = sorted(set(students) - set(everyone))
        if unknown:
            raise GradingError(
                f"no collected submission of '{lab_id}' for {unknown} under {course.submitted}"
            )
        everyone = [s for s in everyone if s in students]
    todo, skipped = [], []
    for student in everyone:
        done = lab.state / "results" / f"{student}.json"
        if not force and done.exists():
            try:
                prev = json.loads(done.read_text())
                fresh = prev.get("fingerprint") == submission_fingerprint(
                    course.submitted / student / lab_id
                )
            except ValueError:
                fresh = False
            if fresh:
                skipped.append(student)
                continue
        todo.append(student)
    workers = max(1, workers or os.cpu_count() or 1)
    on_event(BatchEvent("planned", todo=tuple(todo), skipped=tuple(skipped)))
    tmp_root = Path(tempfile.mkdtemp(prefix="medai-grade-"))
    tmp_root.chmod(0o711)
    graded: list[dict] = []
    try:
        if todo:
            on_event(BatchEvent("reference"))
            reference(lab, course, backend, data_dir, tmp_root, policy.limits.to_limits())
        with Progress(
            TextColumn("grading {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            disable=not progress,
        ) as bar:
            task = bar.add_task(lab_id, total=len(todo))

            def one(student: str) -> dict:
                on_event(BatchEvent("started", student=student))
                try:
                    result, nbs = grade_submission(
                        lab, course, student, backend, policy, data_dir, tmp_root
                    )
                except Exception as exc:  # a grader-side failure stays with this submission
                    result, nbs = _grader_error(lab, course, student, exc), {}
                store(course, lab, result, nbs)
                on_event(BatchEvent("finished", student=student, result=result))
                return result

            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(one, s): s for s in todo}
                try:
                    for fut in as_completed(futures):
                        graded.append(fut.result())
                        bar.advance(task)
                except KeyboardInterrupt:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return BatchSummary(
        lab_id, graded, skipped, time.monotonic() - t0, lab.reference_report, lab.warnings
    )


def _grader_error(lab: Lab, course: Course, student: str, exc: Exception) -> dict:
    tasks = {}
    for info in lab.notebooks:
        for gid, c in info.cells.items():
            if c.grade:
                tasks[gid] = {
                    "notebook": info.name,
                    "max": c.points,
                    "score": 0.0,
                    "message": "grader error",
                }
    return {
        "version": RESULT_VERSION,
        "student": student,
        "lab": lab.id,
        "fingerprint": "",  # never counts as done: regraded on the next run
        "status": "error",
        "messages": [f"grader error: {type(exc).__name__}: {exc}"],
        "tamper": [],
        "tasks": tasks,
        "notebooks": {},
        "timestamp": None,
        "auto_score": 0.0,
        "max_score": sum(t["max"] or 0.0 for t in tasks.values()),
        "late_fraction": 0.0,
        "late_penalty": 0.0,
        "log": "",
    }
