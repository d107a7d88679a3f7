"""`medai` — one verb per job.

Verbs owned by other subpackages are registered from their own ``cli.py`` (each exposes
``register(app)``), so a concern keeps its command-line code next to its logic:

- ``medai up`` / ``medai accounts`` / ``medai class``   :mod:`medai.hub.cli`
- ``medai config check|docs``            here
- ``medai data ...``                     :mod:`medai.synthetic.cli`
- ``medai grade`` / ``medai grades ...`` :mod:`medai.autograder.cli`
- ``medai site build|serve``             :mod:`medai.site.cli`
- ``medai helm values|schema``           :mod:`medai.k8s.cli`
- ``medai models list|show|build``       :mod:`medai.catalog.cli`
- ``medai sandbox verify-log``           :mod:`medai.sandbox.cli`
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import typer

from medai import __version__, ensure_env_bin_on_path
from medai.config import ConfigError, load_config
from medai.paths import package_dir, repo

app = typer.Typer(
    name="medai",
    help="MedAI Lab: a hands-on training lab for AI in medicine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check the course configuration and render its reference.")
app.add_typer(config_app, name="config")


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
    out: Path = typer.Option(
        None,
        help="Folder to write the Markdown references into (default: courses/reference/ of "
        "the checkout).",
        show_default=False,
    ),
    check: bool = typer.Option(False, help="Exit 1 if a page differs instead of writing it."),
) -> None:
    """Render the reference pages (course configuration, grading policy) from their models."""
    from medai.reference import PAGES

    out = out or repo("courses", "reference")
    stale = []
    for name, render in PAGES.items():
        path, text = out / name, render()
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {path}")
    if stale:
        raise fail(f"{', '.join(stale)} out of date; run `medai config docs`", 1)
    if check:
        typer.echo(f"{out}: {len(PAGES)} reference page(s) up to date")


# Subpackages that add verbs. A module that is not there yet is skipped; one that is there but
# fails to import raises, so a broken verb is never silently missing.
_PLUGINS = (
    "medai.hub.cli",
    "medai.synthetic.cli",
    "medai.autograder.cli",
    "medai.site.cli",
    "medai.k8s.cli",
    "medai.catalog.cli",
    "medai.sandbox.cli",
)
for _mod in _PLUGINS:
    if (package_dir() / _mod.split(".")[1] / "cli.py").exists():
        importlib.import_module(_mod).register(app)


def main() -> None:
    ensure_env_bin_on_path()
    app(prog_name="medai")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
