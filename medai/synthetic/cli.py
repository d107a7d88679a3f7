"""`medai data list|info|generate|verify|key`: the synthetic data catalogue on the command line."""

from __future__ import annotations

from pathlib import Path

import typer

from medai.paths import DATA_ROOT
from medai.synthetic.core import (
    GENERATOR_MODULES,
    DataError,
    card_path,
    check_request,
    fingerprint,
    generate,
    get_spec,
    verify,
)

DEFAULT_ROOT = DATA_ROOT

data_app = typer.Typer(
    help="Synthetic medical datasets: list the catalogue, read a card, generate, verify.",
    no_args_is_help=True,
)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@data_app.command("list")
def data_list(
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Course file whose sandboxed datasets to list too (default: the demo course).",
    ),
) -> None:
    """List the catalogue's datasets: public (synthetic) and sandboxed, with kind and access."""
    from medai.catalog.cli import data_list_table  # the whole catalogue lives in medai.catalog

    data_list_table(config)


@data_app.command("info")
def data_info(
    name: str = typer.Argument(..., help="Dataset name (see `medai data list`)."),
) -> None:
    """Show a dataset's card: purpose, schema, planted effects, limits, licence."""
    try:
        spec = get_spec(name)
    except DataError as exc:
        raise _fail(str(exc)) from None
    card = card_path(name)
    typer.echo(
        f"{spec.name}: default {spec.default_n:,} {spec.unit}, formats {', '.join(spec.formats)}"
    )
    if card is None:
        typer.echo(
            f"{spec.summary}\n(the full card is datasets/synthetic/{name}.md of the MedAI Lab "
            "repository, and the course site's Datasets page; run from a checkout to read it here)"
        )
        return
    typer.echo(f"card: {card}\n")
    typer.echo(card.read_text(encoding="utf-8"))


@data_app.command("generate")
def data_generate(
    name: str = typer.Argument(..., help=f"Dataset name: {', '.join(GENERATOR_MODULES)}."),
    n: int | None = typer.Option(None, "--n", help="Size (its unit is in `medai data list`)."),
    seed: int = typer.Option(20261123, "--seed", help="Root seed: same seed, same bytes."),
    out: Path = typer.Option(DEFAULT_ROOT, "--out", help="Data root to write into."),
    fmt: str | None = typer.Option(
        None,
        "--format",
        help="File format: csv, parquet, npz, jsonl as the dataset allows (see `medai data "
        "list`); its first format if unset.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    secret_file: Path | None = typer.Option(
        None,
        "--secret-file",
        help="Deployment data key (`medai data key FILE` makes one): the hidden split and the "
        "test items are drawn from it, so nobody can regenerate them from the public seed. "
        "Without it they follow from --seed (self-study, CI).",
    ),
) -> None:
    """Generate a dataset into OUT/public/NAME (+ OUT/hidden/NAME and a SHA-256 manifest)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from medai.synthetic.secret import load_secret

    try:
        spec, total, fmt = check_request(name, n=n, seed=seed, fmt=fmt)
        secret = load_secret(secret_file) if secret_file is not None else None
    except DataError as exc:
        raise _fail(str(exc)) from None
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=quiet,
        transient=False,
    )
    try:
        with progress:
            task = progress.add_task(f"{name} ({spec.unit})", total=total)
            public = generate(
                name,
                out,
                n=total,
                seed=seed,
                fmt=fmt,
                progress=lambda k: progress.advance(task, k),
                secret=secret,
            )
    except DataError as exc:
        raise _fail(str(exc)) from None
    root = public.parent.parent
    typer.echo(f"wrote {public} (hidden split: {root / 'hidden' / name})")
    if secret is None:
        typer.echo("the hidden split follows from --seed: for self-study only (see --secret-file)")
    else:
        typer.echo(f"the hidden split is keyed by {secret_file} (key {fingerprint(secret)})")
    typer.echo(f"trainees read it with MEDAI_DATA={root / 'public'}")


@data_app.command("key")
def data_key(
    path: Path = typer.Argument(..., help="Where the key lives, e.g. STATE/secrets/data.key."),
) -> None:
    """Create a deployment data key at PATH (once; mode 0600), or check the one there.

    Prints its fingerprint (never the key). `medai up` makes STATE/secrets/data.key itself; use
    this to generate data for a deployment by hand (`medai data generate --secret-file PATH`).
    """
    from medai.synthetic.secret import ensure_secret

    try:
        secret, created = ensure_secret(path)
    except DataError as exc:
        raise _fail(str(exc)) from None
    what = "created" if created else "kept the existing key in"
    typer.echo(f"{what} {path} (key {fingerprint(secret)}); keep it out of every sandbox")


@data_app.command("verify")
def data_verify(
    name: str = typer.Argument(..., help="Dataset name."),
    out: Path = typer.Option(DEFAULT_ROOT, "--out", help="Data root the dataset was written to."),
) -> None:
    """Check a generated dataset against its SHA-256 manifest; exit 1 on any difference."""
    try:
        problems = verify(name, out)
    except DataError as exc:
        raise _fail(str(exc)) from None
    if problems:
        for p in problems:
            typer.secho(p, fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"{name}: every file matches {Path(out) / 'manifests' / (name + '.sha256')}")


def register(app: typer.Typer) -> None:
    """Add ``medai data ...`` to the root app."""
    app.add_typer(data_app, name="data")
