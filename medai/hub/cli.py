"""Hub verbs: ``medai up``, ``medai accounts`` and ``medai class``."""

from __future__ import annotations

import getpass
from pathlib import Path

import typer

from medai.config import ConfigError, CourseConfig, load_config
from medai.paths import STATE, RepositoryContentMissing, repo, require_repo

DEMO_CONFIG = repo("courses", "demo-course.yaml")
DEFAULT_STATE = STATE

accounts_app = typer.Typer(help="Hub accounts: passwords for the course's people.")
class_app = typer.Typer(
    help="Class sessions: start the trainees' servers before a class (on the hub machine)."
)


def _load(config: Path) -> CourseConfig:
    try:
        if config == DEMO_CONFIG:
            require_repo(
                config,
                "the demo course",
                "Run from a checkout of the repository, or pass --config YOUR-COURSE.yaml",
            )
        return load_config(config)
    except RepositoryContentMissing as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
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


def _class_call(state: Path, method: str, path: str, body: dict | None = None) -> dict:
    """Call the running hub's class service with the token ``medai up`` wrote for this state
    folder (``<state>/hub/class-cli.json``, mode 0600: only its operator can read it)."""
    import json
    import urllib.error
    import urllib.request

    from medai.hub.layout import StateLayout

    info_file = StateLayout(state.expanduser().resolve()).class_cli_file
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        typer.secho(
            f"error: {info_file} not found: no hub has run with this state folder. Start it "
            f"with `medai up --state {state}` (or give the --state of the running hub).",
            fg="red",
            err=True,
        )
        raise typer.Exit(2) from None
    except PermissionError:
        typer.secho(
            f"error: {info_file} is readable by the hub's operator only; run this as them.",
            fg="red",
            err=True,
        )
        raise typer.Exit(2) from None
    req = urllib.request.Request(
        info["url"].rstrip("/") + "/" + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"token {info['token']}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            why = json.loads(exc.read()).get("error") or exc.reason
        except ValueError:
            why = exc.reason
        typer.secho(f"error: the class service says: {why} (HTTP {exc.code})", fg="red", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.secho(
            f"error: the class service at {info['url']} does not answer ({exc}). Is the hub "
            f"of {state} running (`medai up --state {state}`)?",
            fg="red",
            err=True,
        )
        raise typer.Exit(2) from None


def _print_session(s: dict) -> None:
    when = f"open until {s['ends_at']}" if s["open"] else f"closed {s['closed_at']}"
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(s["counts"].items())) or "no trainees"
    typer.echo(f"session {s['id']}  {s['group']}  {when}  (opened by {s['opened_by']})")
    typer.echo(f"  {counts}")
    for user, rec in sorted(s["servers"].items()):
        note = f"  ({rec['note']})" if rec["note"] else ""
        typer.echo(f"    {user:<20} {rec['state']}{note}")


@class_app.command("open")
def class_open(
    group: str = typer.Option(
        None, help="Group whose servers to start (default: the course's trainees)."
    ),
    hours: float = typer.Option(
        None, help="How long to keep unused servers warm (default: servers.class_session_hours)."
    ),
    users: str = typer.Option(
        None, help="Only these members of the group, comma-separated (default: all of them)."
    ),
    state: Path = typer.Option(DEFAULT_STATE, help="State folder of the running hub."),
) -> None:
    """Open a class session: the group's servers start now, in the background."""
    body = {k: v for k, v in {"group": group, "hours": hours}.items() if v is not None}
    if users:
        body["users"] = [u.strip() for u in users.split(",") if u.strip()]
    out = _class_call(state, "POST", "api/sessions", body)
    _print_session(out["session"])
    typer.echo(out["memory"]["text"])


@class_app.command("status")
def class_status(
    state: Path = typer.Option(DEFAULT_STATE, help="State folder of the running hub."),
    all_sessions: bool = typer.Option(False, "--all", help="Closed sessions too."),
) -> None:
    """Show the sessions, their servers, and how many warm servers the memory holds."""
    out = _class_call(state, "GET", "api/sessions")
    shown = [s for s in out["sessions"] if all_sessions or s["open"]]
    if not shown:
        typer.echo("no open class session" + ("" if all_sessions else " (--all: closed ones)"))
    for s in shown:
        _print_session(s)
    typer.echo(out["memory"]["text"])


@class_app.command("close")
def class_close(
    session: str = typer.Argument(None, help="Session id (default: every open session)."),
    state: Path = typer.Option(DEFAULT_STATE, help="State folder of the running hub."),
) -> None:
    """Close a session: its servers are no longer kept warm (each stops once idle)."""
    ids = [session] if session else None
    if ids is None:
        ids = [s["id"] for s in _class_call(state, "GET", "api/sessions")["sessions"] if s["open"]]
        if not ids:
            typer.echo("no open class session")
    for sid in ids:
        _print_session(_class_call(state, "POST", f"api/sessions/{sid}/close", {})["session"])


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.add_typer(accounts_app, name="accounts")
    app.add_typer(class_app, name="class")
