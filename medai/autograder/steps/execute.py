"""Execution (step 4): one sandbox run of the sanitized notebooks, and its records, validated.

The job folder holds ``job.json`` (notebooks and the trusted task file), ``files/`` (the
notebooks and the lab's released files) and ``inputs/`` (grader-drawn inputs); the sandbox
backend mounts it read-only. Everything that comes back is untrusted: :func:`parse_records`
keeps only records of the documented shape (see :mod:`medai.autograder.runner`) with fields of
the documented types and counts the rest as malformed, so no later step meets a list where it
expects a notebook name, or a dict where it expects text.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from medai.autograder.oracle import OracleServer
from medai.autograder.sandbox import Limits, SandboxBackend, SandboxJob
from medai.autograder.steps.prepare import Lab

__all__ = ["CellRun", "CheckRun", "Execution", "execute", "job_dir", "parse_records"]


@dataclass(frozen=True)
class CellRun:
    """One executed cell, as the runner reported it."""

    nb: str  # notebook file name
    index: int
    ok: bool
    error: str | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class CheckRun:
    """One ``check()`` call recorded in the sandbox: a plain value or the reason there is none."""

    task: str
    nb: str
    cell: int
    value: Any = None  # the tagged plain value, still encoded
    has_value: bool = False
    error: str | None = None


@dataclass
class Execution:
    """What one sandbox run gave back, typed."""

    status: str  # ok | timeout | crashed | output-limit
    returncode: int | None = None
    wall_s: float = 0.0
    log: str = ""
    notes: list[str] = field(default_factory=list)
    malformed: int = 0  # lines or records that were not of the documented shape
    cells: list[CellRun] = field(default_factory=list)
    checks: list[CheckRun] = field(default_factory=list)
    oracle: dict[str, dict[str, int]] | None = None  # clinician usage, when there is one
    phases: dict[str, float] = field(default_factory=dict)  # sandbox start, imports, ...

    @property
    def exec_s(self) -> float:
        return round(sum(c.seconds for c in self.cells), 3)

    def executed(self) -> dict[tuple[str, int], CellRun]:
        return {(c.nb, c.index): c for c in self.cells}

    def check(self, nb_file: str, cell: int, task: str) -> CheckRun | None:
        """The last record of ``task`` made by cell ``cell`` of ``nb_file``."""
        found = None
        for c in self.checks:
            if c.nb == nb_file and c.cell == cell and c.task == task:
                found = c
        return found

    def summary(self) -> dict[str, Any]:
        """The ``sandbox`` entry of a result."""
        return {
            "status": self.status,
            "returncode": self.returncode,
            "wall_s": round(self.wall_s, 3),
            "malformed_lines": self.malformed,
            "exec_s": self.exec_s,
            "notes": self.notes,
        }


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _text(x: Any) -> bool:
    return isinstance(x, str)


def _cell(rec: dict) -> CellRun | None:
    seconds = rec.get("seconds", 0.0)
    error = rec.get("error")
    if not (
        _text(rec.get("nb"))
        and _int(rec.get("index"))
        and isinstance(rec.get("ok"), bool)
        and (error is None or _text(error))
        and _text(rec.get("stdout", ""))
        and _text(rec.get("stderr", ""))
        and isinstance(seconds, int | float)
        and not isinstance(seconds, bool)
        and math.isfinite(seconds)
        and seconds >= 0
    ):
        return None
    return CellRun(
        rec["nb"],
        rec["index"],
        rec["ok"],
        error,
        rec.get("stdout", ""),
        rec.get("stderr", ""),
        float(seconds),
    )


def _check(rec: dict) -> CheckRun | None:
    error = rec.get("error")
    if not (
        _text(rec.get("task"))
        and _text(rec.get("nb"))
        and _int(rec.get("cell"))
        and (error is None or _text(error))
    ):
        return None
    return CheckRun(rec["task"], rec["nb"], rec["cell"], rec.get("value"), "value" in rec, error)


def parse_records(records: list[Any]) -> tuple[list[CellRun], list[CheckRun], int]:
    """The well-formed cell and check records among ``records``, and how many were not.

    Records of other types the runner sends (``start``, ``ready``, ``done``, ``oracle``) are
    neither kept nor counted; a ``cell`` or ``check`` record with a missing field or a field of
    the wrong type is dropped and counted.
    """
    cells: list[CellRun] = []
    checks: list[CheckRun] = []
    bad = 0
    for rec in records:
        if not isinstance(rec, dict):
            bad += 1
            continue
        kind = rec.get("type")
        if kind == "cell":
            c = _cell(rec)
            cells += [c] if c else []
            bad += c is None
        elif kind == "check":
            k = _check(rec)
            checks += [k] if k else []
            bad += k is None
    return cells, checks, bad


def _phases(records: list[Any], started: float | None, wall_s: float, exec_s: float) -> dict:
    """Where a run's time went, from the runner's ``start``/``ready`` clock readings (untrusted:
    shown in benchmarks only, never used for a grade)."""
    marks = {}
    for rec in records:
        if isinstance(rec, dict) and rec.get("type") in ("start", "ready"):
            t = rec.get("t")
            if isinstance(t, float) and math.isfinite(t):
                marks[rec["type"]] = t
    if started is None or set(marks) != {"start", "ready"}:
        return {}
    boot = max(0.0, marks["start"] - started)
    imports = max(0.0, marks["ready"] - marks["start"])
    return {
        "sandbox_start": round(boot, 3),
        "imports": round(imports, 3),
        "cells": round(exec_s, 3),
        "sandbox_rest": round(max(0.0, wall_s - boot - imports - exec_s), 3),
    }


def job_dir(tmp_root: Path, lab: Lab, notebooks: dict[str, nbformat.NotebookNode]) -> Path:
    """A fresh job folder under ``tmp_root`` for ``notebooks`` (name -> notebook)."""
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


def execute(
    lab: Lab,
    notebooks: dict[str, nbformat.NotebookNode],
    *,
    backend: SandboxBackend,
    data_dir: Path | None,
    tmp_root: Path,
    limits: Limits,
    name: str,
) -> Execution:
    """Run ``notebooks`` in one sandbox (with a fresh clinician, if the lab has one)."""
    job = job_dir(tmp_root, lab, notebooks)
    oracle = OracleServer(lab.oracles) if lab.oracles else None  # budgets start full
    started = time.monotonic()
    try:
        res = backend.run(
            SandboxJob(job, data_dir, limits, name=name, oracle=oracle.answer if oracle else None)
        )
    finally:
        shutil.rmtree(job, ignore_errors=True)
    cells, checks, bad = parse_records(res.records)
    run = Execution(
        res.status,
        res.returncode,
        res.wall_s,
        res.log,
        list(res.notes),
        res.malformed_lines + bad,
        cells,
        checks,
        oracle.usage() if oracle is not None else None,
    )
    run.phases = _phases(res.records, started, res.wall_s, run.exec_s)
    return run
