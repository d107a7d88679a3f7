"""`medai` — one verb per job.

Verbs owned by other subpackages are registered from their own ``cli.py`` (each exposes
``register(app)``), so a concern keeps its command-line code next to its logic:

- ``medai up`` / ``medai accounts`` / ``medai class``   :mod:`medai.hub.cli`
- ``medai config check|docs``            here
- ``medai data ...``                     :mod:`medai.synthetic.cli`
- ``medai grade`` / ``medai grades ...`` :mod:`medai.autograder.cli`
- ``medai site build|serve``             :mod:`medai.site.cli`
- ``medai sandbox verify-log``           :mod:`medai.sandbox.cli`
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import typer

from medai import __version__, ensure_env_bin_on_path
from medai.config import ConfigError, load_config, render_reference

app = typer.Typer(
    name="medai",
    help="MedAI Lab: a hands-on training lab for AI in medicine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check the course configuration and render its reference.")
app.add_typer(config_app, name="config")

REPO_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_PATH = REPO_ROOT / "courses" / "reference" / "course-config.md"


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error the user can act on and return the Exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(f"medai {__version__}")
        raise typer.Exit(0)


@config_app.command("check")
def config_check(path: Path = typer.Argument(..., help="Course configuration YAML file.")) -> None:
    """Validate a course configuration; exit 1 and name file, key and reason if it is bad."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    p = cfg.people
    typer.echo(
        f"{path}: ok — course '{cfg.course.id}', {len(p.instructors)} instructor(s), "
        f"{len(p.tas)} TA(s), {len(p.trainees)} trainee(s), {len(cfg.labs)} lab(s), "
        f"{len(cfg.profiles)} profile(s), {len(cfg.datasets)} dataset(s)"
    )


@config_app.command("docs")
def config_docs(
    out: Path = typer.Option(REFERENCE_PATH, help="Where to write the Markdown reference."),
    check: bool = typer.Option(False, help="Exit 1 if the file differs instead of writing it."),
) -> None:
    """Render the course configuration reference from the model."""
    text = render_reference()
    if check:
        if not out.exists() or out.read_text(encoding="utf-8") != text:
            raise fail(f"{out} is out of date; run `medai config docs`", 1)
        typer.echo(f"{out} is up to date")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out}")


# Subpackages that add verbs. A module that is not there yet is skipped; one that is there but
# fails to import raises, so a broken verb is never silently missing.
_PLUGINS = (
    "medai.hub.cli",
    "medai.synthetic.cli",
    "medai.autograder.cli",
    "medai.site.cli",
    "medai.sandbox.cli",
)
for _mod in _PLUGINS:
    _pkg_dir = Path(__file__).parent / _mod.split(".")[1]
    if (_pkg_dir / "cli.py").exists():
        importlib.import_module(_mod).register(app)


def main() -> None:
    ensure_env_bin_on_path()
    app(prog_name="medai")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
