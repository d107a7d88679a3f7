"""``medai up``: prepare the course on this machine and run the embedded hub.

Steps, each with a clear message when it cannot be done:

1. check the tools (bubblewrap and user namespaces, configurable-http-proxy) and the port;
2. lay out the state folder (kept across restarts: hub database, gradebook, homes, exchange);
3. generate the course's datasets (once per name/size/seed/key), hidden splits keyed by the
   deployment's data secret (``<state>/secrets/data.key``, made on the first start), and
   the course catalogue (``medai.catalog``: reference models once, its page at every start);
4. set up the nbgrader course folder, the gradebook roster and release the labs
   (a lab that fails to release is reported and skipped; the others are served);
5. write the hub settings and run JupyterHub (with configurable-http-proxy) until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from medai import ensure_env_bin_on_path
from medai.config import CourseConfig
from medai.hub.auth import read_accounts, write_accounts
from medai.hub.hubconfig import (
    Ports,
    TlsFiles,
    build_hub_settings,
    grader_account,
    public_scheme,
)
from medai.hub.layout import SANDBOX_EXCHANGE, StateLayout
from medai.hub.origins import Origins, OriginsError, check_public_host
from medai.hub.roles import GRADING_SERVICE
from medai.hub.spawner import prepare_user, set_secure_xsrf_cookie
from medai.hub.staffpages import STAFF_EXPORTER
from medai.isolation import cgroups, quota
from medai.isolation.bwrap import IsolationError, Software, find_bwrap, write_identity
from medai.isolation.launch import LaunchFailed, find_pasta
from medai.paths import package_file, repo

HUB_CONFIG_FILE = package_file("hub", "jupyterhub_config.py")


class LaunchError(Exception):
    """Something stops the hub from starting; the message says what and how to fix it."""


def say(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# 1. tools and ports


def check_bwrap() -> str:
    try:
        bwrap = find_bwrap()
    except IsolationError as exc:
        raise LaunchError(str(exc)) from None
    probe = subprocess.run(
        [bwrap, "--unshare-user", "--unshare-pid", "--ro-bind", "/", "/", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        raise LaunchError(
            "bubblewrap cannot create a sandbox here: "
            f"{probe.stderr.strip() or 'exit ' + str(probe.returncode)}. "
            "Unprivileged user namespaces must be enabled "
            "(sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0)."
        )
    return bwrap


def check_pasta() -> str:
    try:
        return find_pasta()
    except LaunchFailed as exc:
        raise LaunchError(str(exc)) from None


def check_limits() -> cgroups.Probe:
    """Which resource limits this machine lets us enforce (said at start, never silently)."""
    return cgroups.probe()


def find_proxy() -> list[str]:
    local = repo("node_modules", ".bin", "configurable-http-proxy")
    if local.exists():
        return [str(local)]
    found = shutil.which("configurable-http-proxy")
    if found:
        return [found]
    raise LaunchError(
        "configurable-http-proxy not found. Run `npm install` in the repository "
        "(or `make setup`), or install it with `npm install -g configurable-http-proxy`."
    )


def port_in_use(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def choose_origins(ip: str, port: int, public_host: str, scheme: str = "http") -> Origins:
    """Where users reach the hub; user servers and services get subdomains of it."""
    try:
        host = check_public_host(public_host)
    except OriginsError as exc:
        raise LaunchError(str(exc)) from None
    try:
        loopback = ip == "localhost" or ipaddress.ip_address(ip).is_loopback
    except ValueError:  # a host name: it may name another interface
        loopback = False
    if host == "localhost" and not loopback:
        raise LaunchError(
            f"--ip {ip} serves other machines, but their browsers cannot reach "
            "http://localhost: give the name they open with --public-host NAME, a DNS name "
            "whose wildcard *.NAME also points at this machine (see the README's classroom "
            "LAN section)"
        )
    return Origins(host, port, scheme=scheme)


def choose_ports(ip: str, port: int) -> Ports:
    if not 1 <= port <= 65535:
        raise LaunchError(f"--port {port} is not a TCP port (1-65535)")
    if port_in_use(ip, port):
        raise LaunchError(
            f"port {port} on {ip} is already in use (another hub, or another program). "
            f"Stop it, or choose another port with --port."
        )
    taken = {port}
    picks = []
    while len(picks) < 6:
        p = free_port()
        if p not in taken:
            taken.add(p)
            picks.append(p)
    return Ports(
        public=port,
        hub=picks[0],
        proxy_api=picks[1],
        formgrader=picks[2],
        grading=picks[3],
        classes=picks[4],
        sandbox=picks[5],
    )


def check_tls_files(cert: Path | None, key: Path | None) -> TlsFiles | None:
    """Check ``--ssl-cert``/``--ssl-key`` before anything starts: both or neither, readable,
    PEM, and the key belonging to the certificate (configurable-http-proxy would only fail
    later, in the hub log)."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = ("--ssl-cert", "--ssl-key") if key is None else ("--ssl-key", "--ssl-cert")
        raise LaunchError(f"{given} needs {missing} too: give the certificate and its key.")
    paths = {}
    for option, path in (("--ssl-cert", cert), ("--ssl-key", key)):
        path = path.expanduser().resolve()
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except FileNotFoundError:
            raise LaunchError(f"{option} {path}: no such file.") from None
        except IsADirectoryError:
            raise LaunchError(f"{option} {path}: is a folder, not a PEM file.") from None
        except PermissionError:
            raise LaunchError(
                f"{option} {path}: not readable by this user (uid {os.getuid()}). "
                "Fix its permissions (the key: readable by the hub's user only, chmod 600)."
            ) from None
        paths[option] = path
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(paths["--ssl-cert"], paths["--ssl-key"])
    except ssl.SSLError as exc:
        why = (
            "the key does not belong to the certificate"
            if "KEY_VALUES_MISMATCH" in str(exc)
            else f"not a PEM certificate and private key ({exc.reason or exc})"
        )
        raise LaunchError(
            f"--ssl-cert {paths['--ssl-cert']} / --ssl-key {paths['--ssl-key']}: {why}. "
            "Give the certificate (PEM, with its chain) and the unencrypted private key made "
            "with it."
        ) from None
    return TlsFiles(cert=str(paths["--ssl-cert"]), key=str(paths["--ssl-key"]))


# ---------------------------------------------------------------------------------------------
# 2. state


def prepare_state(cfg: CourseConfig, state: Path) -> StateLayout:
    state = state.expanduser().resolve()
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LaunchError(
            f"cannot create the state folder {state}: {exc.strerror}. "
            "Choose a folder you can write with --state."
        ) from None
    if not os.access(state, os.W_OK | os.X_OK):
        raise LaunchError(
            f"the state folder {state} is not writable by this user "
            f"(uid {os.getuid()}). Fix its permissions or choose another with --state."
        )
    layout = StateLayout(state)
    course = cfg.course.id
    try:
        for d in layout.all_dirs(course, cfg.people.everyone):
            d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LaunchError(
            f"cannot create {exc.filename} in the state folder: {exc.strerror}. "
            "Fix the folder's permissions or choose another with --state."
        ) from None
    for user in cfg.people.everyone:
        prepare_user(layout, user, [course])
    write_identity(layout.sandbox_etc(grader_account(course)), grader_account(course), "/tmp")
    return layout


# ---------------------------------------------------------------------------------------------
# 3. data


def prepare_data(cfg: CourseConfig, layout: StateLayout) -> None:
    """Generate the course's datasets; their hidden splits are keyed by the deployment's data
    secret (made once in ``<state>/secrets``), so no trainee can regenerate them."""
    if not cfg.datasets:
        return
    from medai.synthetic.core import DataError, fingerprint, generate, get_spec
    from medai.synthetic.secret import ensure_secret

    try:
        secret, created = ensure_secret(layout.data_secret)
    except DataError as exc:
        raise LaunchError(str(exc)) from None
    if created:
        say(f"  data: made the hidden splits' key {layout.data_secret} (keep it private)")
    for ds in cfg.datasets:
        stamp = layout.data / "manifests" / f"{ds.name}.params.json"
        # the key's fingerprint, not the key: a new key regenerates, the stamp reveals nothing
        params = {"n": ds.n, "seed": ds.seed, "key": fingerprint(secret)}
        if stamp.exists() and json.loads(stamp.read_text()) == params:
            say(f"  data: {ds.name} already generated")
            continue
        try:
            spec = get_spec(ds.name)
            t0 = time.monotonic()
            generate(ds.name, layout.data, n=ds.n, seed=ds.seed, secret=secret)
        except (DataError, ImportError) as exc:
            raise LaunchError(f"dataset '{ds.name}' could not be generated: {exc}") from None
        stamp.write_text(json.dumps(params))
        n = ds.n or spec.default_n
        say(f"  data: generated {ds.name} ({n} {spec.unit}) in {time.monotonic() - t0:.1f} s")


def prepare_catalog(cfg: CourseConfig, layout: StateLayout, echo: Callable[[str], None]) -> None:
    """The course catalogue trainees see read-only: reference models (built once, seconds) and
    its page (:mod:`medai.catalog.publish`; a model that cannot be built is reported, and the
    hub starts without it)."""
    from medai.catalog.publish import publish

    publish(layout.catalog, cfg, echo)


# ---------------------------------------------------------------------------------------------
# 4. course


def nbgrader_course_config(course: str) -> str:
    return (
        "# Generated by `medai up`. Paths are those inside the formgrader's sandbox.\n"
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.course_id = {course!r}\n"
        f"c.Exchange.root = {SANDBOX_EXCHANGE!r}\n"
        "c.Exchange.path_includes_course = True\n"
        "# Pages staff open render submitted HTML: sanitised, MathJax served locally\n"
        "# (medai.hub.staffpages; the formgrader's extension enforces the same).\n"
        "c.HTMLExporter.sanitize_html = True\n"
        f"c.GenerateFeedback.exporter_class = {STAFF_EXPORTER!r}\n"
    )


def _nbgrader(args: list[str], cwd: Path, layout: StateLayout) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("nbgrader")
    return subprocess.run(
        [str(exe), *args, f"--Exchange.root={layout.root / 'exchange'}"],
        cwd=cwd,
        capture_output=True,
        text=True,
    )


@dataclass
class CourseReport:
    released: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def prepare_course(cfg: CourseConfig, layout: StateLayout, config_dir: Path) -> CourseReport:
    from nbgrader.api import Gradebook

    ensure_env_bin_on_path()  # nbgrader runs `alembic` from PATH
    course = cfg.course.id
    cdir = layout.course_dir(course)
    (cdir / "nbgrader_config.py").write_text(nbgrader_course_config(course))
    with Gradebook(f"sqlite:///{cdir / 'gradebook.db'}", course_id=course) as gb:
        for name in cfg.people.trainees:
            gb.update_or_create_student(name, first_name=name, last_name="")
    report = CourseReport()
    for lab in cfg.labs:
        if not lab.release:
            continue
        outbound = layout.exchange(course) / "outbound" / lab.id
        if outbound.exists():
            report.released.append(lab.id)
            continue
        src = (config_dir / lab.source).resolve()
        if not src.is_dir():
            src = repo(lab.source).resolve()
        dest = cdir / "source" / lab.id
        if not dest.exists():
            if not src.is_dir() or not any(src.glob("*.ipynb")):
                report.failed[lab.id] = f"no notebook found in {lab.source} ({src})"
                continue
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        gen = _nbgrader(["generate_assignment", lab.id, "--force"], cdir, layout)
        if gen.returncode != 0:
            report.failed[lab.id] = "nbgrader generate_assignment failed: " + _tail(gen)
            continue
        rel = _nbgrader(["release_assignment", lab.id, f"--course={course}"], cdir, layout)
        if rel.returncode != 0:
            report.failed[lab.id] = "nbgrader release_assignment failed: " + _tail(rel)
            continue
        report.released.append(lab.id)
    return report


def _tail(proc: subprocess.CompletedProcess, n: int = 6) -> str:
    text = (proc.stderr or "") + (proc.stdout or "")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) or f"exit {proc.returncode}"


# ---------------------------------------------------------------------------------------------
# accounts


DEMO_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off a screen


def new_demo_password() -> str:
    """A random password, easy to copy from a screen: 3 groups of 4 (about 59 bits)."""
    return "-".join("".join(secrets.choice(DEMO_ALPHABET) for _ in range(4)) for _ in range(3))


def legacy_demo_password(user: str) -> str:
    """What ``--demo`` set before random demo passwords; replaced where it is still in use."""
    return f"medai-demo-{user}"


def set_password(layout: StateLayout, user: str, password: str) -> str:
    """Set ``user``'s password in the accounts file; return its bcrypt hash."""
    accounts = read_accounts(layout.accounts_file)
    accounts[user] = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    write_accounts(layout.accounts_file, accounts)
    return accounts[user]


def ensure_demo_accounts(cfg: CourseConfig, layout: StateLayout) -> dict[str, str]:
    """Random demo passwords, made once per state folder and kept (mode 0600) in
    ``hub/demo-passwords.json``; return ``{user: password}`` of the users who still have theirs.

    A user whose password the instructor set (``medai accounts set-password``) keeps it and is
    not listed; one still on the old predictable ``medai-demo-<name>`` gets a random one."""
    path = layout.demo_passwords_file
    try:
        demo = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        demo = {}
    accounts = read_accounts(layout.accounts_file)
    for user in cfg.people.everyone:
        pw_hash = accounts.get(user)
        mine = demo.get(user)
        if isinstance(mine, dict) and pw_hash is not None and mine.get("hash") == pw_hash:
            continue  # still the demo password made here
        if isinstance(mine, dict) and pw_hash is None:  # the accounts file was reset: keep it
            mine["hash"] = set_password(layout, user, mine["password"])
            continue
        demo.pop(user, None)
        legacy = legacy_demo_password(user).encode()
        if pw_hash is not None and not bcrypt.checkpw(legacy, pw_hash.encode()):
            continue  # the instructor set this one
        password = new_demo_password()
        demo[user] = {"password": password, "hash": set_password(layout, user, password)}
    write_accounts(path, demo)  # atomically, mode 0600 (also when it was made wider)
    return {u: demo[u]["password"] for u in cfg.people.everyone if u in demo}


# ---------------------------------------------------------------------------------------------
# 5. run


def _die_with_parent() -> None:
    """In the hub's process: get SIGTERM when `medai up` dies, however it dies (Linux)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_until_up(
    url: str, proc: subprocess.Popen, timeout: float, log: Path, connect: str | None = None
) -> None:
    """Wait until ``url`` + ``/hub/api`` answers 200. ``connect``: the ``http://ip:port`` to
    open instead (the public name may not resolve on this machine), with the public host in
    the Host header, as the proxy routes by host."""
    deadline = time.monotonic() + timeout
    target = (connect or url) + "/hub/api"
    headers = {"Host": urllib.parse.urlsplit(url).netloc} if connect else {}
    # Our own process on loopback: its certificate may well be self-signed for another name.
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LaunchError(
                f"JupyterHub exited during start (code {proc.returncode}).\n" + tail_file(log)
            )
        try:
            req = urllib.request.Request(target, headers=headers)
            with urllib.request.urlopen(req, timeout=2, context=context) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise LaunchError(
        f"JupyterHub did not answer on {url} within {timeout:.0f} s.\n" + tail_file(log)
    )


def tail_file(path: Path, n: int = 25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()[-n:]
    except FileNotFoundError:
        return ""
    return f"last lines of {path}:\n" + "\n".join("  " + ln for ln in lines)


@dataclass
class Hub:
    """A running embedded hub (used by ``medai up`` and by the end-to-end tests)."""

    proc: subprocess.Popen
    url: str
    layout: StateLayout
    ports: Ports
    log: Path
    origins: Origins = field(default_factory=Origins)

    def server_url(self, user: str) -> str:
        """``user``'s server, on its own origin (``http://alice.localhost:PORT/user/alice``)."""
        return self.origins.server_url(user)

    def service_url(self, name: str) -> str:
        """A service, on its own origin (``http://c--service.localhost:PORT/services/c``)."""
        return self.origins.service_url(name)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def check_grading_policy(cfg: CourseConfig, config_path: Path) -> Path | None:
    """The course file's ``grading_policy``, resolved against the course file and validated
    now, so a bad policy stops ``medai up`` with its message instead of failing a grading run."""
    if cfg.grading_policy is None:
        return None
    from medai.autograder import GradingError
    from medai.autograder.policy import load_policy

    path = (config_path.parent / cfg.grading_policy).resolve()
    try:
        load_policy(path)
    except GradingError as exc:
        raise LaunchError(f"{config_path}: grading_policy: {exc}") from None
    return path


def start_hub(
    cfg: CourseConfig,
    *,
    config_path: Path,
    state: Path,
    ip: str = "127.0.0.1",
    port: int = 8000,
    demo: bool = False,
    log_level: str = "INFO",
    echo: Callable[[str], None] = say,
    start_timeout: float = 180,
    settings_hook: Callable[[dict], None] | None = None,
    ssl_cert: Path | None = None,
    ssl_key: Path | None = None,
    public_host: str = "localhost",
) -> tuple[Hub, dict[str, str], CourseReport]:
    """Prepare everything and start the hub; return once it answers on its public URL.

    ``public_host``: the name users open; the hub is at ``http://<public_host>:<port>``, each
    user's server and each service on a subdomain of it (:mod:`medai.hub.origins`).

    ``settings_hook`` may edit the generated settings before the hub reads them (the benchmark
    uses it to run the same hub without sandboxes, for comparison). With ``ssl_cert`` and
    ``ssl_key`` the public URL is HTTPS.
    """
    ensure_env_bin_on_path()
    tls = check_tls_files(ssl_cert, ssl_key)
    bwrap = check_bwrap()
    check_pasta()
    proxy = find_proxy()
    grading_policy = check_grading_policy(cfg, config_path)
    limits = check_limits()
    echo(f"Sandbox limits: {limits.describe()}")
    origins = choose_origins(ip, port, public_host, public_scheme(tls))
    ports = choose_ports(ip, port)
    echo(f"Preparing course '{cfg.course.id}' in {state}")
    layout = prepare_state(cfg, state)
    echo(quota.probe(layout.root).describe())
    prepare_data(cfg, layout)
    prepare_catalog(cfg, layout, echo)
    report = prepare_course(cfg, layout, config_path.parent)
    # the formgrader reads its Jupyter configuration from the course folder
    set_secure_xsrf_cookie(layout.course_dir(cfg.course.id), tls is not None)
    for lab in report.released:
        echo(f"  lab: {lab} released")
    for lab, why in report.failed.items():
        echo(f"  lab: {lab} NOT released — {why}")
    passwords = ensure_demo_accounts(cfg, layout) if demo else {}
    class_cli_token = secrets.token_hex(32)  # `medai class` (new at every start)

    settings = build_hub_settings(
        cfg,
        layout,
        ip=ip,
        ports=ports,
        proxy_command=proxy,
        software=Software.detect(),
        bwrap=bwrap,
        log_level=log_level,
        tls=tls,
        public_host=origins.host,
        class_cli_token=class_cli_token,
        grading_policy=grading_policy,
    )
    if settings_hook is not None:
        settings_hook(settings)
    write_private(layout.settings_file, json.dumps(settings, indent=1))  # holds that token
    log = layout.hub / "logs" / "hub.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env["MEDAI_HUB_SETTINGS"] = str(layout.settings_file)
    with open(log, "ab") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medai.hub.app", "-f", str(HUB_CONFIG_FILE)],
            cwd=layout.hub,
            env=env,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    url = origins.hub
    hub = Hub(proc=proc, url=url, layout=layout, ports=ports, log=log, origins=origins)
    local = "127.0.0.1" if ip in ("0.0.0.0", "", "localhost") else ip
    if ":" in local:
        local = f"[{local}]" if local != "::" else "[::1]"
    try:
        connect = f"{public_scheme(tls)}://{local}:{ports.public}"
        wait_until_up(url, proc, start_timeout, log, connect=connect)
    except BaseException:
        hub.stop()
        raise
    write_class_cli_file(layout, ports, class_cli_token)
    return hub, passwords, report


def write_private(path: Path, text: str) -> None:
    """Write ``path`` atomically, readable and writable by its owner only (mode 0600)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)  # also when an older file was wider
    os.replace(tmp, path)


def write_class_cli_file(layout: StateLayout, ports: Ports, token: str) -> None:
    """Where ``medai class`` finds the class service and the token that lets it call it
    (and nothing else), for the operator of this state folder only (mode 0600). The service
    listens on loopback: the command line talks to it directly, not through the proxy."""
    info = {"url": class_service_direct_url(ports), "token": token}
    write_private(layout.class_cli_file, json.dumps(info, indent=1))


def class_service_direct_url(ports: Ports) -> str:
    from medai.hub.roles import CLASS_SERVICE

    return f"http://127.0.0.1:{ports.classes}/services/{CLASS_SERVICE}/"


def _terminate(signum, frame):
    raise KeyboardInterrupt


def run_up(
    cfg: CourseConfig,
    *,
    config_path: Path,
    state: Path,
    ip: str,
    port: int,
    demo: bool,
    ssl_cert: Path | None = None,
    ssl_key: Path | None = None,
    public_host: str = "localhost",
) -> int:
    # SIGTERM during preparation or start behaves like Ctrl-C: start_hub stops what it started.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        hub, passwords, report = start_hub(
            cfg,
            config_path=config_path,
            state=state,
            ip=ip,
            port=port,
            demo=demo,
            ssl_cert=ssl_cert,
            ssl_key=ssl_key,
            public_host=public_host,
        )
    except KeyboardInterrupt:
        say("Interrupted during start; nothing left running.")
        return 130
    return _serve(cfg, hub, passwords, report)


def _serve(cfg: CourseConfig, hub: Hub, passwords: dict[str, str], report: CourseReport) -> int:
    course = cfg.course.id
    say("")
    say(f"MedAI Lab is running: {hub.url}")
    say(f"  formgrader (instructors, TAs): {hub.service_url(course)}/formgrader")
    say(f"  grading page (instructors, TAs): {hub.service_url(GRADING_SERVICE)}/")
    say(f"  class sessions (instructors, TAs): {hub.service_url('medai-class')}/")
    say(f"  hub log: {hub.log}")
    if passwords:
        say(f"  demo accounts (user / password; kept in {hub.layout.demo_passwords_file}):")
        for role in ("instructors", "tas", "trainees"):
            for user in getattr(cfg.people, role):
                say(f"    {role[:-1]:<10} {user:<12} {passwords.get(user, '(set by instructor)')}")
    else:
        have = read_accounts(hub.layout.accounts_file)
        missing = [u for u in cfg.people.everyone if u not in have]
        if missing:
            say(
                f"  {len(missing)} user(s) have no password yet ({', '.join(missing[:5])}"
                f"{'...' if len(missing) > 5 else ''}): "
                "medai accounts set-password USER --state " + str(hub.layout.root)
            )
    if report.failed:
        say(f"  {len(report.failed)} lab(s) not released (see above); the hub serves the rest.")
    say("Press Ctrl-C to stop.")

    stop = {"now": False}

    def _handler(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    while not stop["now"] and hub.proc.poll() is None:
        with contextlib.suppress(InterruptedError):
            time.sleep(0.5)
    if hub.proc.poll() is not None and not stop["now"]:
        say(f"JupyterHub stopped unexpectedly (code {hub.proc.returncode}).\n{tail_file(hub.log)}")
        return 1
    say("Stopping the hub and every user server ...")
    code = hub.stop()
    say(f"Stopped (hub exit code {code}). State kept in {hub.layout.root}.")
    return 0
