"""``medai grade LAB`` and ``medai grades export``."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from medai.autograder import GradingError

grades_app = typer.Typer(help="Grades from the nbgrader gradebook.", no_args_is_help=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _course(course: Path | None) -> Path:
    return course or Path(os.environ.get("MEDAI_COURSE_DIR", "."))


def grade(
    lab: str = typer.Argument(..., help="Lab (nbgrader assignment) id, e.g. pilot."),
    course: Path = typer.Option(
        None,
        help="Course directory (nbgrader root). Default: $MEDAI_COURSE_DIR or the current folder.",
    ),
    workers: int = typer.Option(0, help="Submissions graded in parallel (default: the CPU count)."),
    student: list[str] = typer.Option(None, help="Grade only this student (repeatable)."),
    data: Path = typer.Option(
        None, help="Data root holding public/ and hidden/ (default: $MEDAI_DATA_ROOT)."
    ),
    policy: Path = typer.Option(
        None,
        help="Grading policy YAML, listing only what it changes (default: the built-in "
        "defaults; see courses/reference/grading-policy.md).",
    ),
    force: bool = typer.Option(False, help="Regrade submissions that already have a result."),
    insecure: bool = typer.Option(
        False, help="Run without bubblewrap (NO isolation). Only for code you trust."
    ),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Grade a lab's collected submissions, each in its own sandbox; resumable."""
    from rich.console import Console
    from rich.table import Table

    from medai.autograder.batch import grade_lab
    from medai.autograder.policy import load_policy
    from medai.autograder.sandbox import get_backend

    if workers < 0:
        raise _fail("--workers must be 0 (all cores) or more")
    data = data or (
        Path(os.environ["MEDAI_DATA_ROOT"]) if os.environ.get("MEDAI_DATA_ROOT") else None
    )
    try:
        backend = get_backend(insecure)
        if insecure:
            typer.secho(
                "warning: --insecure: submissions run WITHOUT a sandbox (no file system or network "
                "isolation); never use this for untrusted submissions",
                fg=typer.colors.YELLOW,
                err=True,
            )
        summary = grade_lab(
            _course(course),
            lab,
            backend=backend,
            policy=load_policy(policy),
            data_root=data,
            workers=workers or None,
            students=student or None,
            force=force,
            progress=not quiet,
        )
    except GradingError as exc:
        raise _fail(str(exc)) from None
    for warning in summary.warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    console = Console()
    table = Table(title=f"{lab}: {len(summary.graded)} graded, {len(summary.skipped)} already done")
    for col in ("student", "status", "score", "tampered", "seconds", "messages"):
        table.add_column(col)
    for r in sorted(summary.graded, key=lambda r: r.student):
        table.add_row(
            r.student,
            r.status,
            f"{r.auto_score:g}/{r.max_score:g}",
            str(len({e["cell"] for e in r.tamper})) if r.tamper else "",
            f"{r.seconds:.1f}",
            "; ".join(r.messages)[:80],
        )
    console.print(table)
    console.print(
        f"done in {summary.seconds:.1f} s; logs and results in grading/{lab}/ of the course"
    )


@grades_app.command("export")
def export(
    out: Path = typer.Option(Path("grades.csv"), "--out", "-o", help="CSV file to write."),
    course: Path = typer.Option(None, help="Course directory (default: $MEDAI_COURSE_DIR or .)."),
    lab: str = typer.Option(None, help="Only this lab."),
) -> None:
    """Write grades (with late penalties, status and tamper flags) to CSV."""
    from medai.autograder.export import export_grades

    try:
        n = export_grades(_course(course), out, lab)
    except GradingError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"wrote {n} row(s) to {out}")


def register(app: typer.Typer) -> None:
    """Add ``grade`` and ``grades`` to the root ``medai`` app."""
    app.command("grade")(grade)
    app.add_typer(grades_app, name="grades")
