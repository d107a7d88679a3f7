"""Hub verbs: ``medai up`` and ``medai accounts``."""

from __future__ import annotations

import getpass
from pathlib import Path

import typer

from medai.config import ConfigError, CourseConfig, load_config

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO_ROOT / "courses" / "demo-course.yaml"
DEFAULT_STATE = Path(".medai") / "state"

accounts_app = typer.Typer(help="Hub accounts: passwords for the course's people.")


def _load(config: Path) -> CourseConfig:
    try:
        return load_config(config)
    except ConfigError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


def up(
    config: Path = typer.Option(DEMO_CONFIG, "--config", help="Course configuration YAML."),
    port: int = typer.Option(8000, help="Port users open in their browser."),
    ip: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: all)."),
    state: Path = typer.Option(
        DEFAULT_STATE, help="State folder: hub database, gradebook, homes (kept across runs)."
    ),
    demo: bool = typer.Option(
        False,
        help="Give users without a password a random demo password (made once per state "
        "folder, kept in <state>/hub/demo-passwords.json) and print them.",
    ),
    ssl_cert: Path = typer.Option(
        None,
        "--ssl-cert",
        readable=False,  # checked by check_tls_files, with the fix in the message
        help="Serve HTTPS with this certificate (PEM, with its chain); needs --ssl-key.",
        show_default=False,
    ),
    ssl_key: Path = typer.Option(
        None,
        "--ssl-key",
        readable=False,  # checked by check_tls_files, with the fix in the message
        help="The private key (PEM, unencrypted) of --ssl-cert.",
        show_default=False,
    ),
    public_host: str = typer.Option(
        "localhost",
        help="The name users open (hub at http://NAME:PORT). Every user's server and service "
        "gets a subdomain of it, so NAME and *.NAME must reach this machine: localhost does "
        "by itself; on a LAN use a wildcard DNS name (see the README).",
    ),
) -> None:
    """Prepare the course (data, labs, gradebook) and run the embedded JupyterHub."""
    from medai.hub.launcher import LaunchError, run_up

    cfg = _load(config)
    try:
        code = run_up(
            cfg,
            config_path=config,
            state=state,
            ip=ip,
            port=port,
            demo=demo,
            ssl_cert=ssl_cert,
            ssl_key=ssl_key,
            public_host=public_host,
        )
    except LaunchError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@accounts_app.command("set-password")
def set_password_cmd(
    user: str = typer.Argument(..., help="User name from the course configuration."),
    config: Path = typer.Option(DEMO_CONFIG, "--config", help="Course configuration YAML."),
    state: Path = typer.Option(DEFAULT_STATE, help="State folder of the hub."),
    password: str = typer.Option(
        None, help="The password (prompted for, hidden, when not given).", show_default=False
    ),
) -> None:
    """Set a user's hub password (the running hub picks it up at their next login)."""
    from medai.hub.launcher import set_password
    from medai.hub.layout import StateLayout

    cfg = _load(config)
    if cfg.role_of(user) is None:
        typer.secho(
            f"error: '{user}' is not in {config} (people: instructors, tas, trainees)",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    if password is None:
        password = getpass.getpass(f"New password for {user}: ")
        if getpass.getpass("Again: ") != password:
            typer.secho("error: the passwords differ; nothing changed", fg="red", err=True)
            raise typer.Exit(2)
    if len(password) < 8:
        typer.secho("error: use at least 8 characters; nothing changed", fg="red", err=True)
        raise typer.Exit(2)
    set_password(StateLayout(state.expanduser().resolve()), user, password)
    typer.echo(f"password set for {user}")


@accounts_app.command("list")
def list_cmd(
    config: Path = typer.Option(DEMO_CONFIG, "--config", help="Course configuration YAML."),
    state: Path = typer.Option(DEFAULT_STATE, help="State folder of the hub."),
) -> None:
    """List the course's people and whether each has a password."""
    from medai.hub.auth import read_accounts
    from medai.hub.layout import StateLayout

    cfg = _load(config)
    have = read_accounts(StateLayout(state.expanduser().resolve()).accounts_file)
    for role in ("instructors", "tas", "trainees"):
        for u in getattr(cfg.people, role):
            typer.echo(f"{role[:-1]:<10} {u:<20} {'password set' if u in have else 'no password'}")


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.add_typer(accounts_app, name="accounts")
