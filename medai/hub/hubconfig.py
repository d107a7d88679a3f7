"""Build the embedded hub's configuration as plain data.

:func:`build_hub_settings` turns a course configuration and a state layout into a JSON-able
mapping ``{ConfigurableClass: {trait: value}}``. ``medai up`` writes it to
``<state>/hub/settings.json`` and starts ``jupyterhub -f medai/hub/jupyterhub_config.py``, which
applies it with :func:`apply_settings`. Tests read the mapping directly, without a hub.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from medai.config import CourseConfig
from medai.hub import roles
from medai.hub.isolation import Software, common_argv
from medai.hub.layout import (
    SANDBOX_COURSE_ROOT,
    SANDBOX_DATA,
    SANDBOX_DATA_ROOT,
    SANDBOX_EXCHANGE,
    StateLayout,
)
from medai.hub.origins import Origins
from medai.hub.staffpages import FORMGRADER_SERVER_ARGS


@dataclass(frozen=True)
class Ports:
    public: int  # the proxy: what users open
    hub: int  # the hub's own API, loopback only
    proxy_api: int  # configurable-http-proxy's REST API, loopback only
    formgrader: int  # the course's formgrader service, loopback only


# The hub's own pages (login, home, token, admin) carry inline scripts with per-request data
# (JupyterHub's templates), so their script-src cannot be narrowed without forking the
# templates. They render no markup a trainee controls (names come from the course file and
# JupyterHub escapes them), and with subdomain_host no trainee page shares their origin, so the
# policy keeps JupyterHub's frame-ancestors and report-uri and adds the cheap restrictions.
HUB_CSP = "; ".join(
    [
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'self'",
        "report-uri /hub/security/csp-report",
    ]
)


def grader_account(course: str) -> str:
    """Name of the account the formgrader runs as inside its sandbox."""
    return f"{course}-grader"


def formgrader_argv(
    layout: StateLayout, course: str, software: Software, bwrap: str = "bwrap"
) -> list[str]:
    """The formgrader runs in a sandbox too: it sees the course folder, the whole exchange and
    the data (public and hidden), but not the hub's database, secrets or users' homes."""
    ex = layout.exchange(course)
    argv = common_argv(bwrap, layout.sandbox_etc(grader_account(course)), software)
    argv += ["--bind", str(layout.course_dir(course)), SANDBOX_COURSE_ROOT]
    argv += ["--setenv", "HOME", "/tmp"]
    argv += ["--ro-bind", str(ex / "inbound"), f"{SANDBOX_EXCHANGE}/{course}/inbound"]
    argv += ["--bind", str(ex / "outbound"), f"{SANDBOX_EXCHANGE}/{course}/outbound"]
    argv += ["--bind", str(ex / "feedback"), f"{SANDBOX_EXCHANGE}/{course}/feedback"]
    argv += ["--ro-bind", str(layout.public_data), SANDBOX_DATA]
    argv += ["--ro-bind", str(layout.data), SANDBOX_DATA_ROOT]
    argv += ["--setenv", "MEDAI_DATA", SANDBOX_DATA]
    # where nbgrader-side tools in the formgrader find the data root and the course
    argv += ["--setenv", "MEDAI_DATA_ROOT", SANDBOX_DATA_ROOT]
    argv += ["--setenv", "MEDAI_COURSE_DIR", SANDBOX_COURSE_ROOT]
    argv += ["--setenv", "PATH", software.path_env]
    argv += ["--setenv", "JUPYTER_CONFIG_PATH", SANDBOX_COURSE_ROOT]
    argv += ["--chdir", SANDBOX_COURSE_ROOT, "--"]
    return argv


def build_hub_settings(
    cfg: CourseConfig,
    layout: StateLayout,
    *,
    ip: str,
    ports: Ports,
    proxy_command: list[str],
    software: Software,
    bwrap: str = "bwrap",
    log_level: str = "INFO",
    public_host: str = "localhost",
) -> dict[str, dict]:
    """``public_host``: the name users open (``localhost``, or a LAN name with a wildcard DNS
    record); the hub is served there, each user's server and each service on a subdomain of
    it (see :mod:`medai.hub.origins`)."""
    course = cfg.course.id
    origins = Origins(public_host, ports.public)
    hub_dir = layout.hub
    venv_bin = Path(sys.executable).parent
    singleuser = str(venv_bin / "jupyterhub-singleuser")
    local_profiles = [p for p in cfg.profiles if p.gpus == 0] or list(cfg.profiles)
    profile = local_profiles[0]

    formgrader = {
        "name": course,
        "display": True,
        "url": f"http://127.0.0.1:{ports.formgrader}",
        "oauth_no_confirm": True,
        "command": formgrader_argv(layout, course, software, bwrap)
        + [singleuser, f"--ServerApp.root_dir={SANDBOX_COURSE_ROOT}", *FORMGRADER_SERVER_ARGS],
        "cwd": str(layout.course_dir(course)),
        "oauth_client_allowed_scopes": [],
    }
    receipts = {
        "name": "medai-exchange",
        "display": False,
        "command": [
            sys.executable,
            "-m",
            "medai.hub.exchange",
            "--state",
            str(layout.root),
            "--course",
            course,
            "--users",
            ",".join(cfg.people.everyone),
        ],
    }

    return {
        "JupyterHub": {
            "bind_url": f"http://{ip}:{ports.public}",
            "hub_bind_url": f"http://127.0.0.1:{ports.hub}",
            "db_url": f"sqlite:///{hub_dir / 'jupyterhub.sqlite'}",
            "cookie_secret_file": str(hub_dir / "jupyterhub_cookie_secret"),
            "pid_file": str(hub_dir / "jupyterhub.pid"),
            "authenticator_class": "medai.hub.auth.MedaiAuthenticator",
            "spawner_class": "medai.hub.spawner.BwrapSpawner",
            "load_groups": roles.hub_groups(cfg),
            "load_roles": roles.hub_roles(cfg),
            "services": [formgrader, receipts],
            "cleanup_servers": True,
            "log_level": log_level,
            "template_vars": {"medai_course": cfg.course.title, "medai_course_id": course},
            # Own origins: the hub on public_host, user servers and services on subdomains.
            "subdomain_host": origins.hub,
            "tornado_settings": {"headers": {"Content-Security-Policy": HUB_CSP}},
        },
        "ConfigurableHTTPProxy": {
            "command": proxy_command,
            "api_url": f"http://127.0.0.1:{ports.proxy_api}",
            "pid_file": str(hub_dir / "proxy.pid"),
        },
        "Authenticator": {
            "allowed_users": sorted(cfg.people.everyone),
            "admin_users": [],
        },
        "NativeAuthenticator": {"enable_signup": False, "open_signup": False},
        "MedaiAuthenticator": {"accounts_file": str(layout.accounts_file)},
        "Spawner": {
            "default_url": "/lab",
            "http_timeout": 90,
            "start_timeout": 120,
            "env_keep": [],
            "cpu_limit": float(profile.cpu_limit),
            "mem_limit": profile.mem_limit,
        },
        "BwrapSpawner": {
            "state_root": str(layout.root),
            "courses": [course],
            "software_paths": list(software.paths),
            "path_env": software.path_env,
            "bwrap": bwrap,
            "server_cmd": [singleuser],
        },
    }


def apply_settings(c, settings: dict[str, dict]) -> None:
    """Apply a :func:`build_hub_settings` mapping to a traitlets config object."""
    for section, values in settings.items():
        target = getattr(c, section)
        for key, value in values.items():
            setattr(target, key, value)
