"""``medai sandbox verify-log``: check the audit log's hash chain."""

from __future__ import annotations

from pathlib import Path

import typer

from medai.sandbox.audit import verify
from medai.sandbox.registry import SandboxLayout


def register(app: typer.Typer) -> None:
    sandbox_app = typer.Typer(help="The data sandbox: private data, disclosure control, audit.")
    app.add_typer(sandbox_app, name="sandbox")

    @sandbox_app.command("verify-log")
    def verify_log(
        state: Path = typer.Option(Path(".medai") / "state", help="The hub's state folder."),
        log: Path = typer.Option(None, help="An audit log file (instead of the state's)."),
    ) -> None:
        """Check that no entry of the audit log was changed, removed or inserted."""
        path = log or SandboxLayout(state).audit_log
        ok, message = verify(path)
        typer.echo(message, err=not ok)
        raise typer.Exit(0 if ok else 1)
