"""Build the embedded hub's configuration as plain data.

:func:`build_hub_settings` turns a course configuration and a state layout into a JSON-able
mapping ``{ConfigurableClass: {trait: value}}``. ``medai up`` writes it to
``<state>/hub/settings.json`` and starts ``jupyterhub -f medai/hub/jupyterhub_config.py``, which
applies it with :func:`apply_settings`. Tests read the mapping directly, without a hub.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from medai.config import CourseConfig
from medai.hub import roles
from medai.hub.layout import SANDBOX_COURSE_ROOT, StateLayout
from medai.hub.origins import Origins
from medai.hub.staffpages import FORMGRADER_SERVER_ARGS
from medai.isolation import bwrap, launch, profiles
from medai.isolation.bwrap import Software
from medai.isolation.limits import Limits, parse_mb

# Password guessing (see medai.hub.auth): an account locks after this many wrong passwords for
# this long; one client address is refused after this many failed logins within this window.
# every Jupyter server of the hub (user servers and the formgrader) starts this way: JupyterHub's
# entry point, less one slow import (see medai.hub.singleuser)
SINGLEUSER = (sys.executable, "-m", "medai.hub.singleuser")
ACCOUNT_FAILED_LOGINS = 10
ACCOUNT_LOCK_SECONDS = 600
ADDRESS_FAILED_LOGINS = 30
ADDRESS_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class TlsFiles:
    """Certificate (chain) and private key the public endpoint serves HTTPS with, as absolute
    paths (checked by :func:`medai.hub.launcher.check_tls_files`)."""

    cert: str
    key: str


def public_scheme(tls: TlsFiles | None) -> str:
    """The scheme of every public URL of the hub: the one place it is decided."""
    return "https" if tls is not None else "http"


@dataclass(frozen=True)
class Ports:
    public: int  # the proxy: what users open
    hub: int  # the hub's own API, loopback only
    proxy_api: int  # configurable-http-proxy's REST API, loopback only
    formgrader: int  # the course's formgrader service, loopback only
    grading: int  # the trusted grading service, loopback only
    classes: int = 0  # the class-session service (medai.hub.classes), loopback only; 0: none
    sandbox: int = 0  # the data-sandbox service (medai.sandbox.service), loopback only; 0: none


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


def formgrader_limits(cfg: CourseConfig) -> Limits:
    """The formgrader gets the largest local profile's memory (it renders every submission)."""
    local = [p for p in cfg.profiles if p.gpus == 0] or list(cfg.profiles)
    mem = max(parse_mb(p.mem_limit) for p in local)
    return Limits.server(memory_mb=mem, cpus=None, processes=512)


def grading_page_path() -> str:
    """Path of the grading page below the hub's public URL (one place, for `medai up` and the
    formgrader's messages)."""
    return f"/services/{roles.GRADING_SERVICE}/"


def formgrader_argv(
    layout: StateLayout,
    course: str,
    software: Software,
    bwrap_exe: str = "bwrap",
    limits: Limits | None = None,
) -> list[str]:
    """The formgrader's sandbox: the course folder and the exchange, not the hub's database,
    secrets, users' homes or hidden data (see medai.isolation.profiles.formgrader). Its tmpfs
    sizes follow ``limits``, the same object its cgroup is given."""
    limits = limits or Limits.server(memory_mb=4096, cpus=None)
    profile = profiles.formgrader(layout, course, grader_account(course), software, limits)
    return bwrap.argv(profile, bwrap_exe)


def formgrader_guard_args(ports: Ports, grading_page: str | None = None) -> list[str]:
    """Formgrader command-line options: load medai.hub.formgrader_guard (Autograde goes to the
    grading service, nbgrader's executor never runs there). On the command line, so no
    configuration file in the course folder can switch it off."""
    service = f"http://127.0.0.1:{ports.grading}{grading_page_path()}"
    return [
        "--ServerApp.jpserver_extensions=medai.hub.formgrader_guard=True",
        f"--MedaiFormgraderGuard.grading_api={service}api",
        f"--MedaiFormgraderGuard.grading_page={grading_page or grading_page_path()}",
    ]


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
    tls: TlsFiles | None = None,
    public_host: str = "localhost",
    class_cli_token: str | None = None,
    grading_policy: Path | None = None,
) -> dict[str, dict]:
    """``public_host``: the name users open (``localhost``, or a LAN name with a wildcard DNS
    record); the hub is served there, each user's server and each service on a subdomain of
    it (see :mod:`medai.hub.origins`). ``grading_policy``: the grading service's policy file
    (None: the built-in defaults)."""
    course = cfg.course.id
    origins = Origins(public_host, ports.public, scheme=public_scheme(tls))
    hub_dir = layout.hub
    local_profiles = [p for p in cfg.profiles if p.gpus == 0] or list(cfg.profiles)
    profile = local_profiles[0]

    fg_limits = formgrader_limits(cfg)
    formgrader = {
        "name": course,
        "display": True,
        "url": f"http://127.0.0.1:{ports.formgrader}",
        "oauth_no_confirm": True,
        "command": launch.command(
            f"medai-formgrader-{course}",
            fg_limits,
            formgrader_argv(layout, course, software, bwrap, fg_limits),
            [*SINGLEUSER, f"--ServerApp.root_dir={SANDBOX_COURSE_ROOT}"]
            + formgrader_guard_args(ports, origins.service_url(roles.GRADING_SERVICE) + "/")
            + list(FORMGRADER_SERVER_ARGS),
            forward=ports.formgrader,
            # the hub's API, and the grading service (Autograde forwards to it)
            outbound=[ports.hub, ports.grading],
        ),
        "cwd": str(layout.course_dir(course)),
        # the user's formgrader token may reach the grading service: Autograde forwards with it
        # (JupyterHub grants it only to users who hold the scope themselves: course staff)
        "oauth_client_allowed_scopes": [f"access:services!service={roles.GRADING_SERVICE}"],
    }
    # The trusted grading service: on the host, outside every sandbox, like the exchange keeper.
    grading = {
        "name": roles.GRADING_SERVICE,
        "display": True,
        "url": f"http://127.0.0.1:{ports.grading}",
        "oauth_no_confirm": True,
        "command": [
            sys.executable,
            "-m",
            "medai.hub.grading",
            "--state",
            str(layout.root),
            "--course",
            course,
            "--title",
            cfg.course.title,
            "--labs",
            json.dumps([{"id": lab.id, "title": lab.title} for lab in cfg.labs if lab.release]),
            "--bwrap",
            bwrap,
        ]
        + (["--policy", str(grading_policy)] if grading_policy else []),
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

    settings = {
        "JupyterHub": {
            "bind_url": f"{public_scheme(tls)}://{ip}:{ports.public}",
            "hub_bind_url": f"http://127.0.0.1:{ports.hub}",
            "db_url": f"sqlite:///{hub_dir / 'jupyterhub.sqlite'}",
            "cookie_secret_file": str(hub_dir / "jupyterhub_cookie_secret"),
            "pid_file": str(hub_dir / "jupyterhub.pid"),
            "authenticator_class": "medai.hub.auth.MedaiAuthenticator",
            "spawner_class": "medai.hub.spawner.BwrapSpawner",
            "load_groups": roles.hub_groups(cfg),
            "load_roles": roles.hub_roles(cfg)
            + class_roles(cfg, ports, class_cli_token)
            + (roles.sandbox_roles(cfg) if _sandbox_on(cfg, ports) else []),
            "services": [
                formgrader,
                receipts,
                grading,
                *class_services(cfg, layout, ports, class_cli_token),
                *sandbox_services(cfg, layout, ports, bwrap),
            ],
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
        "NativeAuthenticator": {
            "enable_signup": False,
            "open_signup": False,
            "allowed_failed_logins": ACCOUNT_FAILED_LOGINS,
            "seconds_before_next_try": ACCOUNT_LOCK_SECONDS,
        },
        "MedaiAuthenticator": {
            "accounts_file": str(layout.accounts_file),
            "failed_logins_per_ip": ADDRESS_FAILED_LOGINS,
            "ip_window_seconds": ADDRESS_WINDOW_SECONDS,
        },
        "Spawner": {
            "default_url": "/lab",
            "http_timeout": 90,
            # the time in the start queue counts (see medai.hub.spawnqueue)
            "start_timeout": int(cfg.servers.start_timeout_minutes * 60),
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
            "max_processes": profile.max_processes,
            "server_cmd": list(SINGLEUSER),
            "concurrent_starts": cfg.servers.concurrent_starts,
            "kernel_cull_idle_seconds": int(cfg.servers.idle_kernel_minutes * 60),
            "kernel_cull_connected": cfg.servers.cull_connected_kernels,
        },
    }
    if _sandbox_on(cfg, ports):
        settings["JupyterHub"]["custom_scopes"] = roles.sandbox_custom_scopes()
        # a trainee's server token may call the sandbox service (the notebook client), on top
        # of the default `server` role's scopes; JupyterHub grants only what the user holds
        settings["Spawner"]["server_token_scopes"] = [
            "users:activity!user",
            "access:servers!server",
            *roles.sandbox_user_scopes(),
        ]
        settings["BwrapSpawner"]["sandbox_port"] = ports.sandbox
    if tls is not None:
        _add_tls(settings, tls)
    return settings


def _sandbox_on(cfg: CourseConfig, ports: Ports) -> bool:
    return bool(cfg.sandbox.datasets) and bool(ports.sandbox)


def sandbox_services(cfg: CourseConfig, layout: StateLayout, ports: Ports, bwrap: str) -> list:
    """The data-sandbox service (medai.sandbox.service), on the host like the grading service:
    it alone reads the private data; its jobs run in the data-job sandbox."""
    if not _sandbox_on(cfg, ports):
        return []
    return [
        {
            "name": roles.SANDBOX_SERVICE,
            "display": True,
            "url": f"http://127.0.0.1:{ports.sandbox}",
            "oauth_no_confirm": True,
            # a browser login may carry the sandbox's own scopes (only those the user holds:
            # the review page needs the data owner's)
            "oauth_client_allowed_scopes": sorted(roles.sandbox_custom_scopes()),
            "command": [
                sys.executable,
                "-m",
                "medai.sandbox.service",
                "--state",
                str(layout.root),
                "--course-json",
                cfg.model_dump_json(),
                "--bwrap",
                bwrap,
            ],
        }
    ]


def idle_server_seconds(cfg: CourseConfig) -> int:
    return int(cfg.servers.idle_server_minutes * 60)


def class_services(
    cfg: CourseConfig, layout: StateLayout, ports: Ports, cli_token: str | None
) -> list[dict]:
    """The class-start services: class sessions (with its command-line token) and the idle
    culler. Each runs outside every sandbox with the scopes of :func:`class_roles`."""
    out: list[dict] = []
    servers = cfg.servers
    idle_s = idle_server_seconds(cfg)
    if ports.classes:
        local = [p for p in cfg.profiles if p.gpus == 0] or list(cfg.profiles)
        out.append(
            {
                "name": roles.CLASS_SERVICE,
                "display": True,
                "url": f"http://127.0.0.1:{ports.classes}",
                "oauth_no_confirm": True,
                "oauth_client_allowed_scopes": [],
                "command": [
                    sys.executable,
                    "-m",
                    "medai.hub.classes",
                    "--state",
                    str(layout.root),
                    "--course",
                    cfg.course.id,
                    "--title",
                    cfg.course.title,
                    "--group",
                    roles.student_group(cfg.course.id),
                    "--session-hours",
                    str(servers.class_session_hours),
                    "--reserve-mb",
                    str(servers.class_memory_reserve_mb),
                    "--server-limit-mb",
                    str(parse_mb(local[0].mem_limit)),
                    "--pace",
                    str(max(1, servers.concurrent_starts - 1)),
                    "--keepalive-seconds",
                    str(max(10, min(300, idle_s // 3)) if idle_s else 300),
                ],
            }
        )
        if cli_token:
            out.append({"name": roles.CLASS_CLI_SERVICE, "api_token": cli_token})
    if idle_s:
        # as Zero to JupyterHub runs it: a hub-managed service with its own token (and,
        # where util-linux's setpriv is there, ended with the hub however the hub ends)
        setpriv = shutil.which("setpriv")
        out.append(
            {
                "name": roles.CULLER_SERVICE,
                "display": False,
                "command": [
                    *([setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []),
                    sys.executable,
                    "-m",
                    "jupyterhub_idle_culler",
                    f"--timeout={idle_s}",
                    f"--cull-every={max(5, min(600, idle_s // 3))}",
                    "--concurrency=2",
                ],
            }
        )
    return out


def class_roles(cfg: CourseConfig, ports: Ports, cli_token: str | None) -> list[dict]:
    """The roles of the services :func:`class_services` adds (none for one it leaves out)."""
    have = set()
    if ports.classes:
        have |= {roles.CLASS_SERVICE} | ({roles.CLASS_CLI_SERVICE} if cli_token else set())
    if idle_server_seconds(cfg):
        have.add(roles.CULLER_SERVICE)
    out = []
    for role in roles.class_roles(cfg, culler=roles.CULLER_SERVICE in have):
        if "services" in role and not set(role["services"]) <= have:
            continue
        if roles.CLASS_SERVICE not in have and "groups" in role:  # the class page's users
            continue
        out.append(role)
    return out


def _add_tls(settings: dict[str, dict], tls: TlsFiles) -> None:
    """HTTPS on the public endpoint (configurable-http-proxy terminates it), and every cookie
    marked ``Secure``: the hub's (``cookie_options``, which JupyterHub also hands to the users'
    servers and services for their login cookies) and the servers' own ``_xsrf`` cookies
    (``secure_cookies``: see :func:`medai.hub.spawner.set_secure_xsrf_cookie`)."""
    hub = settings["JupyterHub"]
    hub["ssl_cert"] = tls.cert
    hub["ssl_key"] = tls.key
    tornado = hub.setdefault("tornado_settings", {})
    tornado.setdefault("cookie_options", {})["secure"] = True
    settings["BwrapSpawner"]["secure_cookies"] = True


def apply_settings(c, settings: dict[str, dict]) -> None:
    """Apply a :func:`build_hub_settings` mapping to a traitlets config object."""
    for section, values in settings.items():
        target = getattr(c, section)
        for key, value in values.items():
            setattr(target, key, value)
