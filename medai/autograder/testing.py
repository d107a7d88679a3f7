"""Throwaway nbgrader courses for tests and benchmarks (real nbgrader, real files).

:func:`make_course` lays out ``<dir>/`` the way the embedded hub does (nbgrader_config.py,
source/<lab>/, release/<lab>/ via ``nbgrader generate_assignment``, gradebook.db);
:func:`submit` writes a fabricated submission to ``submitted/<student>/<lab>/`` as
``nbgrader collect`` would; :func:`solved` fills a released notebook with the source's solutions,
the way an honest trainee would.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import nbformat


def _env() -> dict[str, str]:
    import os

    # nbgrader's Gradebook runs the `alembic` console script from PATH: use this environment's
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def lab_data_key() -> bytes:
    """The data secret tests and benchmarks generate hidden splits with, as a deployment does
    (``medai up`` keys them with ``<state>/secrets/data.key``): ``$MEDAI_TEST_DATA_KEY`` (64 hex
    digits) when set, so a lab's thresholds can be checked under other keys, else a fixed key."""
    import hashlib
    import os

    given = os.environ.get("MEDAI_TEST_DATA_KEY", "").strip()
    if given:
        try:
            key = bytes.fromhex(given)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ValueError("MEDAI_TEST_DATA_KEY must be 64 hexadecimal digits (32 bytes)")
        return key
    return hashlib.sha256(b"medai tests: a fixed deployment data key").digest()


def make_course(course_dir: Path, lab_src: Path, lab: str, course_id: str = "medai101") -> Path:
    """Create a course with ``lab`` generated from ``lab_src``; return the course directory."""
    course_dir = Path(course_dir)
    (course_dir / "source").mkdir(parents=True, exist_ok=True)
    (course_dir / "nbgrader_config.py").write_text(
        "c = get_config()  # noqa\n"
        f"c.CourseDirectory.course_id = {course_id!r}\n"
        f"c.CourseDirectory.root = {str(course_dir)!r}\n"
    )
    shutil.copytree(lab_src, course_dir / "source" / lab, dirs_exist_ok=True)
    nbgrader = Path(sys.executable).with_name("nbgrader")
    proc = subprocess.run(
        [str(nbgrader), "generate_assignment", lab, "--force"],
        cwd=course_dir,
        capture_output=True,
        text=True,
        env=_env(),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{proc.stdout}\n{proc.stderr}")
    return course_dir


def solved(
    release_nb: nbformat.NotebookNode, source_nb: nbformat.NotebookNode
) -> nbformat.NotebookNode:
    """The released notebook with every solution cell replaced by the source's solution."""
    nb = nbformat.from_dict(release_nb)
    answers = {}
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            text = "\n".join(
                line
                for line in cell.source.splitlines()
                if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line
            )
            answers[meta["grade_id"]] = text
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nb


def submit(
    course_dir: Path,
    lab: str,
    student: str,
    notebooks: dict[str, nbformat.NotebookNode | bytes | str],
    *,
    timestamp: dt.datetime | None = None,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """Write a submission as ``nbgrader collect`` leaves it; return its folder."""
    folder = Path(course_dir) / "submitted" / student / lab
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, nb in notebooks.items():
        path = folder / name
        if isinstance(nb, bytes):
            path.write_bytes(nb)
        elif isinstance(nb, str):
            path.write_text(nb)
        else:
            with warnings.catch_warnings():  # fabricated duplicates are the point of some tests
                warnings.simplefilter("ignore")
                nbformat.write(nb, path)
    for name, data in (extra or {}).items():
        (folder / name).write_bytes(data)
    ts = timestamp or dt.datetime.now(dt.UTC)
    (folder / "timestamp.txt").write_text(ts.strftime("%Y-%m-%d %H:%M:%S.%f %Z"))
    return folder


def verdicts(executed: Path) -> dict[str, str]:
    """grade_id of each check cell of an executed notebook -> "PASS", "FAIL", or the end of what
    it printed instead (for lab tests that run a variant of a lab under papermill)."""
    nb = nbformat.read(executed, as_version=4)
    found = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade"):
            continue
        text = "".join(
            o.get("text", "") + (f"{o['ename']}: {o['evalue']}" if "ename" in o else "")
            for o in cell.get("outputs", [])
        )
        gid = meta["grade_id"]
        if f"FAIL [{gid}]" in text:
            found[gid] = "FAIL"
        elif f"PASS [{gid}]" in text:
            found[gid] = "PASS"
        else:
            found[gid] = text.strip()[-300:] or "no output"
    return found


# nbgrader's solution region in a source cell (what the trainee's version replaces)
SOLUTION_REGION = re.compile(
    r"^[ \t]*### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION\n?", re.S | re.M
)


def with_answer(source_nb: Path, answer_cell: str, answer: str | None) -> nbformat.NotebookNode:
    """Lab ``source_nb`` with the solution region of cell ``answer_cell`` (a grade_id) replaced
    by ``answer``; unchanged when ``answer`` is None."""
    nb = nbformat.read(source_nb, as_version=4)
    if answer is not None:
        cell = next(c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == answer_cell)
        cell.source = SOLUTION_REGION.sub(lambda _m: answer, cell.source)
    return nb


def hidden_model_scores(
    nb: nbformat.NotebookNode,
    data_root: Path,
    lab_dir: Path,
    task_id: str,
    *,
    skip: tuple[str, ...] = ("explore",),
    mask_shape: tuple[int, int] | None = None,
) -> dict[str, float]:
    """Run a lab notebook's code cells in-process with its CI parameters (``ci.yaml``), then score
    the ``predict`` function it passed to ``check(task_id, ...)`` on the hidden test labels of
    ``data_root`` exactly as the trusted scorer does. Cells whose grade_id is in ``skip`` are
    left out. For lab calibration tests, not for grading untrusted code."""
    import contextlib
    import io
    import os

    import yaml

    from medai.autograder.metrics import compute
    from medai.autograder.modeldata import (
        align,
        load_groups,
        load_source,
        to_plain_output,
        validate_output,
    )
    from medai.autograder.tasks import load_tasks

    spec = load_tasks(lab_dir / "tasks.yaml").tasks[task_id]
    ci = yaml.safe_load((lab_dir / "ci.yaml").read_text(encoding="utf-8"))
    recorded: dict = {}
    ns: dict = {}
    before = os.environ.get("MEDAI_DATA")
    os.environ["MEDAI_DATA"] = str(data_root / "public")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for cell in nb.cells:
                gid = cell.metadata.get("nbgrader", {}).get("grade_id")
                if cell.cell_type != "code" or gid in skip:
                    continue
                source = cell.source.replace("check, data_dir", "data_dir")
                if gid == "parameters":
                    source += "".join(f"\n{k} = {v!r}" for k, v in ci.items())
                ns["check"] = lambda tid, value, *extra: recorded.__setitem__(tid, value)
                exec(source, ns)
    finally:
        if before is None:
            os.environ.pop("MEDAI_DATA", None)
        else:
            os.environ["MEDAI_DATA"] = before
    public, hidden = data_root / "public" / spec.dataset, data_root / "hidden" / spec.dataset
    inputs = load_source(spec.test.inputs, public)
    pred = to_plain_output(recorded[task_id](inputs.value), spec.output, inputs.ids)
    pred = validate_output(pred, spec.output, len(inputs.value), mask_shape)
    labels = align(inputs, load_source(spec.test.labels, public, hidden), "test split")
    groups = load_groups(spec.test, inputs, public)
    return {m.name: compute(m.name, labels, pred, groups=groups) for m in spec.metrics}


def with_answers(source_nb: Path, answers: dict[str, str]) -> nbformat.NotebookNode:
    """Lab ``source_nb`` with the solution region of each cell named in ``answers`` (grade_id ->
    code) replaced; a named cell must hold exactly one solution region."""
    nb = nbformat.read(source_nb, as_version=4)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    for gid, answer in answers.items():
        if gid not in cells:
            raise KeyError(f"{source_nb.name} has no cell {gid!r}")
        new, n = SOLUTION_REGION.subn(lambda _m, a=answer: a, cells[gid].source)
        if n != 1:
            raise ValueError(f"cell {gid!r} has {n} solution regions; expected exactly one")
        cells[gid].source = new
    return nb


def public_verdicts(nb: nbformat.NotebookNode, lab_dir: Path, data_root: Path) -> dict[str, str]:
    """Run a lab notebook's code cells in this process with the real ``check`` in public mode
    (what a trainee's kernel and papermill run) on the public data of ``data_root``; return each
    check cell's verdict, ``"PASS"`` or ``"FAIL"`` (a failed check stops only its own cell).
    Cheaper than papermill for lab tests; for our own notebooks, never untrusted code."""
    import contextlib
    import io
    import os

    from medai.autograder import lab

    saved = {k: os.environ.get(k) for k in ("MEDAI_DATA", "MEDAI_TASKS")}
    os.environ["MEDAI_DATA"] = str(data_root / "public")
    os.environ["MEDAI_TASKS"] = str(lab_dir / "tasks.yaml")
    spec, lab._public_spec = lab._public_spec, None
    found: dict[str, str] = {}
    ns: dict = {}
    try:
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type != "code":
                continue
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out):
                    exec(cell.source, ns)
            except lab.CheckFailed:
                found[meta.get("grade_id", "?")] = "FAIL"
                continue
            if meta.get("grade"):
                found[meta["grade_id"]] = "PASS" if "PASS [" in out.getvalue() else "no verdict"
    finally:
        lab._public_spec = spec
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return found
