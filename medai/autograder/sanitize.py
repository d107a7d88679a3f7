"""Load a submitted notebook safely and restore its graded cells from the gradebook.

Like nbgrader's ``OverwriteCells``, but every change is recorded as a :class:`TamperEvent` so the
instructor sees what was changed, and nothing the trainee added to cell metadata survives:

- the file is size-checked, must be JSON and nbformat 4, and must validate;
- every cell keeps only its type, source and (restored) nbgrader metadata — tags, execution flags
  and other metadata are dropped, and unusual tags are reported;
- graded, locked and solution cells are matched to the gradebook by ``grade_id``: unknown ids are
  stripped, duplicates demoted to plain cells, re-typed or re-flagged cells and edited locked cells
  restored, deleted ones re-inserted, points taken from the gradebook;
- hidden tests (nbgrader's ``### BEGIN HIDDEN TESTS`` blocks) are removed from restored sources:
  they never enter the sandbox.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

BENIGN_TAGS = {"parameters", "injected-parameters"}
BENIGN_METADATA = {
    "nbgrader",
    "tags",
    "collapsed",
    "scrolled",
    "jupyter",
    "execution",
    "trusted",
    "editable",
    "deletable",
    "id",
    "vscode",
}
_HIDDEN = re.compile(
    r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[^\n]*\n?", re.M | re.S
)


class InvalidSubmission(Exception):
    """The submitted file cannot be graded; the message says why, for the trainee."""


@dataclass(frozen=True)
class SourceInfo:
    """What the gradebook knows about one nbgrader cell of the source notebook."""

    name: str
    cell_type: str
    locked: bool
    grade: bool
    solution: bool
    points: float | None
    source: str
    checksum: str | None


@dataclass
class NotebookInfo:
    name: str
    cells: dict[str, SourceInfo]  # in notebook order


@dataclass
class TamperEvent:
    cell: str
    kind: (
        str  # deleted | duplicated | retyped | metadata | edited | unknown-id | tags | bad-notebook
    )
    detail: str

    def as_dict(self) -> dict:
        return {"cell": self.cell, "kind": self.kind, "detail": self.detail}


@dataclass
class Sanitized:
    nb: NotebookNode
    events: list[TamperEvent] = field(default_factory=list)
    tampered: set[str] = field(default_factory=set)  # grade ids whose cell was tampered with
    grade_cells: dict[str, int] = field(default_factory=dict)  # grade id -> cell index


def strip_hidden_tests(source: str) -> str:
    """Remove nbgrader hidden-test blocks (delimiters included)."""
    return _HIDDEN.sub("", source)


def read_notebook_info(gradebook, notebook: str, assignment: str) -> NotebookInfo:
    """Collect the source cells of one notebook from an open nbgrader ``Gradebook``."""
    nb = gradebook.find_notebook(notebook, assignment)
    grades = {c.name: float(c.max_score) for c in nb.grade_cells}
    solutions = {c.name for c in nb.solution_cells}
    cells: dict[str, SourceInfo] = {}
    for sc in nb.source_cells:
        cells[sc.name] = SourceInfo(
            name=sc.name,
            cell_type=sc.cell_type,
            locked=bool(sc.locked),
            grade=sc.name in grades,
            solution=sc.name in solutions,
            points=grades.get(sc.name),
            source=sc.source,
            checksum=sc.checksum,
        )
    return NotebookInfo(notebook, cells)


def load_submission(path: Path, max_bytes: int) -> NotebookNode:
    """Read and validate a submitted notebook or raise :class:`InvalidSubmission`."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InvalidSubmission(f"{path.name} is missing from the submission") from None
    if not path.is_file() or path.is_symlink():
        raise InvalidSubmission(f"{path.name} is not a regular file")
    if size > max_bytes:
        raise InvalidSubmission(
            f"{path.name} is {size / 1e6:.1f} MB, above the {max_bytes / 1e6:.0f} MB limit "
            "(clear large outputs and resubmit)"
        )
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSubmission(
            f"{path.name} is not valid JSON ({exc}); was it saved fully?"
        ) from None
    if not isinstance(data, dict) or data.get("nbformat") != 4:
        got = data.get("nbformat") if isinstance(data, dict) else type(data).__name__
        raise InvalidSubmission(f"{path.name} is not an nbformat 4 notebook (nbformat: {got!r})")
    try:
        nb = nbformat.from_dict(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # duplicate cell ids: reported by sanitize instead
            nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        raise InvalidSubmission(f"{path.name} is not a valid notebook: {exc.message}") from None
    return nb


def _src(cell: NotebookNode) -> str:
    s = cell.get("source", "")
    return s if isinstance(s, str) else "".join(s)


def _clean_cell(info: SourceInfo, source: str) -> NotebookNode:
    meta = {
        "nbgrader": {
            "grade": info.grade,
            "grade_id": info.name,
            "locked": info.locked,
            "solution": info.solution,
            "task": False,
            "schema_version": 3,
        }
    }
    if info.grade:
        meta["nbgrader"]["points"] = info.points
    if info.checksum:
        meta["nbgrader"]["checksum"] = info.checksum
    if info.locked:
        meta["editable"] = False
        meta["deletable"] = False
    if info.cell_type == "code":
        return nbformat.v4.new_code_cell(source, metadata=meta)
    if info.cell_type == "markdown":
        return nbformat.v4.new_markdown_cell(source, metadata=meta)
    return nbformat.v4.new_raw_cell(source, metadata=meta)


def _plain_cell(cell: NotebookNode) -> NotebookNode:
    if cell.cell_type == "code":
        return nbformat.v4.new_code_cell(_src(cell))
    if cell.cell_type == "markdown":
        return nbformat.v4.new_markdown_cell(_src(cell))
    return nbformat.v4.new_raw_cell(_src(cell))


def sanitize(
    nb: NotebookNode, info: NotebookInfo, release_tags: set[str] | None = None
) -> Sanitized:
    """Rebuild ``nb`` from its sources and the gradebook; report every difference."""
    allowed_tags = BENIGN_TAGS | (release_tags or set())
    out = Sanitized(nbformat.v4.new_notebook())
    out.nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    seen: dict[str, int] = {}
    for i, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {})
        label = f"cell #{i + 1}"
        tags = set(meta.get("tags", []) or [])
        odd_tags = sorted(tags - allowed_tags)
        foreign = sorted(set(meta) - BENIGN_METADATA)
        gid = (
            meta.get("nbgrader", {}).get("grade_id")
            if isinstance(meta.get("nbgrader"), dict)
            else None
        )
        if odd_tags:
            out.events.append(TamperEvent(gid or label, "tags", f"removed tags {odd_tags}"))
        if foreign:
            out.events.append(TamperEvent(gid or label, "metadata", f"removed metadata {foreign}"))
        if gid is None:
            if isinstance(meta.get("nbgrader"), dict):
                out.events.append(
                    TamperEvent(label, "metadata", "nbgrader metadata without grade_id removed")
                )
            out.nb.cells.append(_plain_cell(cell))
            continue
        src = info.cells.get(gid)
        if src is None:
            out.events.append(
                TamperEvent(
                    label, "unknown-id", f"grade_id {gid!r} is not in the gradebook; stripped"
                )
            )
            out.nb.cells.append(_plain_cell(cell))
            continue
        if gid in seen:
            out.events.append(
                TamperEvent(
                    gid, "duplicated", f"a second cell claims {gid!r}; demoted to a plain cell"
                )
            )
            out.tampered.add(gid)
            out.nb.cells.append(_plain_cell(cell))
            continue
        seen[gid] = len(out.nb.cells)
        nbm = meta["nbgrader"]
        if cell.cell_type != src.cell_type:
            out.events.append(
                TamperEvent(
                    gid, "retyped", f"{src.cell_type} cell turned into {cell.cell_type}; restored"
                )
            )
            out.tampered.add(gid)
        flags = {
            "grade": bool(nbm.get("grade")),
            "solution": bool(nbm.get("solution")),
            "locked": bool(nbm.get("locked")),
        }
        want = {"grade": src.grade, "solution": src.solution, "locked": src.locked}
        changed = [k for k in flags if flags[k] != want[k]]
        if src.grade:
            try:
                pts_changed = float(nbm.get("points", "nan")) != src.points
            except (TypeError, ValueError):
                pts_changed = True
            if pts_changed:
                changed.append("points")
        if changed:
            out.events.append(
                TamperEvent(gid, "metadata", f"changed {changed}; restored from the gradebook")
            )
            out.tampered.add(gid)
        source = _src(cell) if cell.cell_type == src.cell_type else src.source
        if src.locked:
            reference = strip_hidden_tests(src.source)
            if source.strip() != reference.strip():
                out.events.append(TamperEvent(gid, "edited", "read-only cell was edited; restored"))
                out.tampered.add(gid)
            source = reference
        out.nb.cells.append(_clean_cell(src, source))
    # re-insert deleted cells after the previous gradebook cell that is present
    order = list(info.cells)
    for k, gid in enumerate(order):
        if gid in seen:
            continue
        src = info.cells[gid]
        out.events.append(
            TamperEvent(gid, "deleted", "cell was deleted; re-inserted from the gradebook")
        )
        if src.grade:
            out.tampered.add(gid)
        pos = 0
        for prev in reversed(order[:k]):
            if prev in seen:
                pos = seen[prev] + 1
                break
        text = strip_hidden_tests(src.source) if src.locked else src.source
        out.nb.cells.insert(pos, _clean_cell(src, text))
        seen = {g: (j + 1 if j >= pos else j) for g, j in seen.items()}
        seen[gid] = pos
    out.grade_cells = {g: j for g, j in seen.items() if info.cells[g].grade}
    return out
