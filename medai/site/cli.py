"""``medai site build``, ``medai site serve`` and ``medai site check-labs`` (notebook CI)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from medai.config import ConfigError
from medai.site.build import DEFAULT_OUT, MARKER, SiteBuildError, SitePaths, build_site
from medai.site.labs import LabError

site_app = typer.Typer(
    help="Build and serve the course site (MkDocs Material, works offline); check the labs.",
    no_args_is_help=True,
)


def _error(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _build(out: Path, config: Path) -> None:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    paths = SitePaths(config=config)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        transient=True,
        console=Console(stderr=True),
        disable=not sys.stderr.isatty(),
    )
    with progress:
        task = progress.add_task("building the site", total=None)
        try:
            result = build_site(
                out,
                paths,
                on_step=lambda name: progress.update(task, description=f"site: {name}"),
            )
        except (SiteBuildError, LabError, ConfigError) as exc:
            raise _error(str(exc)) from None
    typer.echo(
        f"built {result.out}: {result.pages} pages, {len(result.labs)} lab(s), "
        f"{result.size_bytes / 1e6:.1f} MB in {result.seconds:.1f} s"
    )


@site_app.command("build")
def build_cmd(
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="Output folder (replaced on success)."),
    config: Path = typer.Option(
        SitePaths().config, "--config", help="Course configuration (titles, hub links)."
    ),
) -> None:
    """Build the site from courses/, labs/ (student versions) and datasets/synthetic/."""
    _build(out, config)


@site_app.command("serve")
def serve_cmd(
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="Folder of the built site."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8001, help="Port to listen on."),
    build: bool = typer.Option(True, "--build/--no-build", help="Build the site first."),
    config: Path = typer.Option(
        SitePaths().config, "--config", help="Course configuration (titles, hub links)."
    ),
) -> None:
    """Serve the built site on http://HOST:PORT/ (builds it first unless --no-build)."""
    from medai.site.serve import make_server

    if build:
        _build(out, config)
    elif not (out / MARKER).exists():
        raise _error(f"{out}: no built site there; run `medai site build --out {out}` first")
    try:
        server = make_server(out, host=host, port=port)
    except OSError as exc:
        raise _error(f"cannot listen on {host}:{port}: {exc.strerror}; try --port") from None
    typer.echo(f"serving {out} on http://{host}:{port}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@site_app.command("check-labs")
def check_labs_cmd(
    labs: Path = typer.Option(SitePaths().labs, "--labs", help="Folder with one folder per lab."),
    config: Path = typer.Option(
        SitePaths().config, "--config", help="Course configuration (lab order, course id)."
    ),
    report: Path = typer.Option(
        DEFAULT_OUT.parent / "notebook-report.md", "--report", help="Where to write the report."
    ),
    timeout: int = typer.Option(60, help="Seconds one cell may run before the run fails."),
) -> None:
    """Notebook CI: run each lab's reference and student version under papermill."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from medai.config import load_config
    from medai.site.labs import discover_labs
    from medai.site.notebooks import render_report, run_lab

    try:
        cfg = load_config(config)
        found = discover_labs(labs, cfg)
    except (ConfigError, LabError) as exc:
        raise _error(str(exc)) from None
    if not found:
        raise _error(f"{labs}: no lab folder with a notebook in it")
    runs = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        disable=not sys.stderr.isatty(),
    )
    with progress:
        task = progress.add_task("notebook CI", total=len(found))
        for lab in found:
            progress.update(task, description=f"notebook CI: {lab.id}")
            try:
                runs += run_lab(lab, course_id=cfg.course.id, timeout=timeout)
            except LabError as exc:
                raise _error(str(exc)) from None
            progress.advance(task)
    text = render_report(runs)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text, encoding="utf-8")
    typer.echo(text + f"(written to {report})")
    if any(not r.ok for r in runs):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``site`` command group to the root ``medai`` app."""
    app.add_typer(site_app, name="site")
