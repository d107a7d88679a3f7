"""`medai models list|show|build`, and the catalogue table of `medai data list`."""

from __future__ import annotations

from pathlib import Path

import typer

from medai.catalog.models import ModelError
from medai.paths import STATE, repo

DEFAULT_STATE = STATE  # the same default as `medai up`
DEMO_CONFIG = repo("courses", "demo-course.yaml")

models_app = typer.Typer(
    help="The catalogue's models: list them, read a model card, build the reference models.",
    no_args_is_help=True,
)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _models_dir(state: Path) -> Path:
    from medai.hub.layout import StateLayout

    return StateLayout(state.expanduser().resolve()).models


def _load_course(config: Path | None):
    from medai.config import ConfigError, load_config

    path = config if config is not None else (DEMO_CONFIG if DEMO_CONFIG.is_file() else None)
    if path is None:
        return None
    try:
        return load_config(path)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def data_list_table(config: Path | None) -> None:
    """`medai data list`: every dataset of the catalogue, public and sandboxed (host view:
    sandboxed datasets name who has access until when)."""
    from medai.catalog.entries import all_datasets
    from medai.catalog.render import access_text
    from medai.synthetic.core import DataError

    course = _load_course(config)
    try:
        entries = all_datasets(course)
    except DataError as exc:  # pragma: no cover - a generator module failed to import
        raise _fail(str(exc)) from None
    rows = [["NAME", "KIND", "SIZE", "FORMATS", "ACCESS", "SUMMARY"]]
    for e in entries:
        rows.append(
            [
                e.name,
                e.kind,
                e.size or "-",
                "|".join(e.formats) or "-",
                access_text(e, staff=True),
                e.summary,
            ]
        )
    _table(rows)


@models_app.command("list")
def models_list(
    state: Path = typer.Option(DEFAULT_STATE, help="State folder of the hub."),
) -> None:
    """List the models: name, kind, outcome, AUROC on its evaluation rows, dataset."""
    from medai.catalog.entries import all_models

    folder = _models_dir(state)
    cards, problems = all_models(folder)
    for p in problems:
        typer.secho(f"warning: {p}", fg=typer.colors.YELLOW, err=True)
    if not cards:
        typer.echo(
            f"no model in {folder} yet; `medai models build --state {state}` trains the "
            "reference models"
        )
        return
    rows = [["NAME", "KIND", "AUROC", "DATASET", "OUTCOME"]]
    for c in cards:
        auroc = c.metrics.get("auroc")
        rows.append(
            [
                c.name,
                c.kind,
                "-" if auroc is None else f"{auroc:.3f}",
                c.data.dataset,
                c.data.target,
            ]
        )
    _table(rows)


@models_app.command("show")
def models_show(
    name: str = typer.Argument(..., help="Model name (see `medai models list`)."),
    state: Path = typer.Option(DEFAULT_STATE, help="State folder of the hub."),
    json_out: bool = typer.Option(False, "--json", help="Print the card as JSON."),
) -> None:
    """Print a model's card (Markdown, or JSON with --json)."""
    from medai.catalog.models import get_card
    from medai.catalog.render import model_card_markdown

    try:
        card = get_card(name, _models_dir(state))
    except (ModelError, ValueError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(card.model_dump_json(indent=2) if json_out else model_card_markdown(card))


@models_app.command("build")
def models_build(
    state: Path = typer.Option(DEFAULT_STATE, help="State folder of the hub."),
    name: list[str] = typer.Option(
        None, "--name", help="Only this reference model (repeat for more); default: all."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="Course file, for the catalogue page (default: the demo course)."
    ),
) -> None:
    """Train (or retrain) the reference models into STATE/catalog/models and refresh the
    catalogue page trainees see; seconds on a CPU, nothing downloaded."""
    import time

    from medai.catalog import reference
    from medai.catalog.publish import write_page
    from medai.hub.layout import StateLayout

    layout = StateLayout(state.expanduser().resolve())
    course = _load_course(config)
    t0 = time.monotonic()
    try:
        built = reference.build(layout.models, list(name or []) or None)
    except ModelError as exc:
        raise _fail(str(exc)) from None
    page = write_page(layout.catalog, course)
    for folder in built:
        typer.echo(f"wrote {folder}")
    typer.echo(f"built {len(built)} model(s) in {time.monotonic() - t0:.1f} s; page: {page}")


def register(app: typer.Typer) -> None:
    """Add ``medai models ...`` to the root app."""
    app.add_typer(models_app, name="models")
