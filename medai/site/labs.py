"""Labs as the site and notebook CI see them: discovery, student versions, Markdown rendering.

A lab is a folder ``labs/<lab>/`` holding nbgrader *source* notebooks (solutions and hidden
tests included). Every such folder is picked up; the course configuration, when it lists the lab,
adds its title and the "open in the hub" link. The student version is made by nbgrader's own
``GenerateAssignment`` converter (ClearSolutions, ClearHiddenTests, ClearOutput, ...), exactly the
preprocessor chain the hub release uses, and rendered to Markdown with nbconvert.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from medai.config import ID_RE, CourseConfig

IGNORED_NAMES = (".ipynb_checkpoints", "__pycache__", ".DS_Store")


class LabError(Exception):
    """A lab folder the site or notebook CI cannot use; ``str()`` says which and how to fix."""


@dataclass(frozen=True)
class LabInfo:
    """One lab folder, plus what the course configuration says about it."""

    id: str
    title: str
    source_dir: Path
    notebooks: tuple[str, ...]
    in_course: bool = False
    hub_links: dict[str, str] = field(default_factory=dict)


def hub_link(hub_url: str, course_id: str, lab_id: str, notebook: str) -> str:
    """URL that opens a released notebook in the trainee's own JupyterLab.

    nbgrader (with ``path_includes_course``) fetches an assignment into
    ``~/<course_id>/<lab_id>/``; JupyterHub's ``/hub/user-redirect/`` sends each user to their own
    server, so one link works for every trainee.
    """
    return f"{hub_url.rstrip('/')}/hub/user-redirect/lab/tree/{course_id}/{lab_id}/{notebook}"


def _first_heading(nb_path: Path) -> str | None:
    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+?)\s*#*\s*$", cell.source, flags=re.M)
            if m:
                return m.group(1).strip()
    return None


def discover_labs(labs_dir: Path, config: CourseConfig | None = None) -> list[LabInfo]:
    """Every ``labs_dir/<lab>/`` with at least one notebook, in course order, then by name.

    Labs listed in ``config`` come first, in the configuration's teaching order, with the
    configured title and hub links; any other lab folder follows, titled by its notebook's first
    heading. A folder name that nbgrader cannot use as an assignment id is an error.
    """
    labs_dir = Path(labs_dir)
    if not labs_dir.is_dir():
        raise LabError(f"{labs_dir}: no such folder (expected one folder per lab)")
    configured = {}
    if config is not None:
        for lab in config.labs:
            configured[Path(lab.source).name] = lab
    found: list[LabInfo] = []
    for d in sorted(p for p in labs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        notebooks = tuple(sorted(p.name for p in d.glob("*.ipynb")))
        if not notebooks:
            continue
        lab_cfg = configured.get(d.name)
        lab_id = lab_cfg.id if lab_cfg else d.name
        if not re.match(ID_RE, lab_id):
            raise LabError(
                f"{d}: folder name '{d.name}' is not a valid lab id (must match {ID_RE}); "
                "rename the folder, e.g. 'm1-deid'"
            )
        if lab_cfg is not None and config is not None:
            title = lab_cfg.title
            links = {
                nb: hub_link(config.course.hub_url, config.course.id, lab_id, nb)
                for nb in notebooks
            }
        else:
            title = _first_heading(d / notebooks[0]) or d.name
            links = {}
        found.append(
            LabInfo(
                id=lab_id,
                title=title,
                source_dir=d,
                notebooks=notebooks,
                in_course=lab_cfg is not None,
                hub_links=links,
            )
        )
    if config is not None:
        order = {Path(lab.source).name: i for i, lab in enumerate(config.labs)}
        found.sort(key=lambda lab: (order.get(lab.source_dir.name, len(order)), lab.id))
    return found


def generate_student_version(lab: LabInfo, out_dir: Path, course_id: str = "medai") -> list[Path]:
    """Write the student version of ``lab`` (every notebook and data file) into ``out_dir``.

    Runs nbgrader's ``GenerateAssignment`` converter in a throwaway course directory without a
    gradebook (like ``nbgrader generate_assignment --no-db``). Returns the student notebooks.
    """
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="medai-release-") as root:
        src = Path(root) / "source" / lab.id
        shutil.copytree(lab.source_dir, src, ignore=shutil.ignore_patterns(*IGNORED_NAMES))
        cfg = Config()
        cfg.CourseDirectory.root = root
        cfg.CourseDirectory.course_id = course_id
        cfg.CourseDirectory.assignment_id = lab.id
        cfg.SaveCells.enabled = False
        cfg.GenerateAssignment.no_database = True
        coursedir = CourseDirectory(config=cfg)
        converter = GenerateAssignment(coursedir=coursedir, config=cfg)
        # nbgrader logs every step at INFO and its errors (with tracebacks) only to its log;
        # keep the build quiet and collect the errors for our own message.
        errors = _ListHandler()
        log = converter.log
        old_level, old_propagate = log.level, getattr(log, "propagate", True)
        log.setLevel(logging.WARNING)
        log.propagate = False
        log.addHandler(errors)
        try:
            converter.start()
        except Exception as exc:  # nbgrader raises NbGraderException after logging the cause
            details = "\n".join(errors.lines[-3:]) or str(exc)
            raise LabError(
                f"{lab.source_dir}: nbgrader could not generate the student version. "
                "Check the cell metadata (nbgrader's create-assignment toolbar) and the "
                "BEGIN/END SOLUTION and BEGIN/END HIDDEN TESTS markers.\n" + details
            ) from exc
        finally:
            log.removeHandler(errors)
            log.setLevel(old_level)
            log.propagate = old_propagate
        release = Path(root) / "release" / lab.id
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(release, out_dir, dirs_exist_ok=True)
    return [out_dir / nb for nb in lab.notebooks]


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


_FENCE_RE = re.compile(r"^(\s*)(```|~~~)")


def shift_headings(markdown: str, levels: int = 1) -> str:
    """Demote every ATX heading outside code fences by ``levels`` (at most to ``######``)."""
    out, fence = [], None
    for line in markdown.splitlines():
        m = _FENCE_RE.match(line)
        if m:
            if fence is None:
                fence = m.group(2)
            elif m.group(2) == fence:
                fence = None
        elif fence is None and re.match(r"^#{1,6}\s", line):
            hashes = len(line) - len(line.lstrip("#"))
            line = "#" * min(6, hashes + levels) + line[hashes:]
        out.append(line)
    return "\n".join(out) + "\n"


def notebook_markdown(nb_path: Path) -> str:
    """Render a (student) notebook to Markdown: text cells as written, code cells as fences."""
    from nbconvert import MarkdownExporter

    nb = nbformat.read(nb_path, as_version=4)
    # Student notebooks carry no outputs; drop any that slipped through so nothing a solution
    # printed can reach the page.
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    exporter = MarkdownExporter()
    body, _ = exporter.from_notebook_node(nb)
    # nbconvert names the fence after the kernel's Pygments lexer ("ipython3"); the site's
    # highlighter knows it as plain Python.
    body = re.sub(r"^```ipython3?\s*$", "```python", body, flags=re.M)
    return body.strip() + "\n"
