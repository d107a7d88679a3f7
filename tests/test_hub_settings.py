"""The generated hub configuration, read as plain data (no hub started)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medai.hub.hubconfig import Ports, build_hub_settings, formgrader_argv
from medai.hub.layout import StateLayout
from medai.hub.roles import hub_groups, hub_roles, profiles_for
from medai.hub.spawner import prepare_user, sandbox_env
from medai.isolation import bwrap, profiles
from medai.isolation.bwrap import Software
from medai.isolation.limits import Limits


def user_sandbox_argv(layout, user, courses, software):
    limits = Limits.server(memory_mb=1024, cpus=1.0)
    return bwrap.argv(profiles.trainee_server(layout, user, courses, software, limits))


SOFTWARE = Software(paths=("/opt/py", "/opt/venv", "/opt/medai"), path_env="/opt/venv/bin:/usr/bin")


@pytest.fixture
def settings(demo_config, tmp_path):
    return build_hub_settings(
        demo_config,
        StateLayout(tmp_path),
        ip="127.0.0.1",
        ports=Ports(8000, 8081, 8001, 9000, 9001),
        proxy_command=["chp"],
        software=SOFTWARE,
    )


def binds(argv: list[str]) -> dict[str, tuple[str, str]]:
    """{inside: (kind, host)} of every bind in a bubblewrap command line."""
    out = {}
    for i, a in enumerate(argv):
        if a in ("--bind", "--ro-bind"):
            out[argv[i + 2]] = (a, argv[i + 1])
    return out


def test_groups_follow_nbgrader_convention(demo_config):
    groups = hub_groups(demo_config)
    assert groups["formgrade-medai101"]["users"] == ["instructor", "ta"]
    assert groups["nbgrader-medai101"]["users"] == ["trainee1", "trainee2", "trainee3"]


def test_only_staff_get_formgrader_scopes(demo_config):
    roles = {r["name"]: r for r in hub_roles(demo_config)}
    staff = roles["medai101-staff"]
    assert staff["groups"] == ["formgrade-medai101"]
    assert "access:services!service=medai101" in staff["scopes"]
    # nothing hub-wide: the formgrader and the grading service only
    assert all(s.endswith(("!service=medai101", "!service=medai-grading")) for s in staff["scopes"])
    assert roles["medai101-formgrader"]["scopes"] == []
    granted = [r for r in hub_roles(demo_config) if "nbgrader-medai101" in r.get("groups", [])]
    assert granted == []  # trainees keep JupyterHub's default `user` role only


def test_hub_settings_wire_the_parts(settings, tmp_path):
    hub = settings["JupyterHub"]
    assert hub["bind_url"] == "http://127.0.0.1:8000"
    assert hub["hub_bind_url"] == "http://127.0.0.1:8081"  # loopback only
    assert hub["db_url"] == f"sqlite:///{tmp_path / 'hub' / 'jupyterhub.sqlite'}"
    assert hub["spawner_class"] == "medai.hub.spawner.BwrapSpawner"
    assert hub["authenticator_class"] == "medai.hub.auth.MedaiAuthenticator"
    services = {s["name"]: s for s in hub["services"]}
    assert services["medai101"]["url"] == "http://127.0.0.1:9000"
    fg = services["medai101"]["command"]
    assert fg[1:3] == ["-m", "medai.isolation.launch"]  # cgroup + own network, then bwrap
    assert fg[fg.index("--forward") + 1] == "9000" and fg[fg.index("--outbound") + 1] == "8081"
    assert "bwrap" in fg and "--unshare-all" in fg
    assert "url" not in services["medai-exchange"]
    assert settings["NativeAuthenticator"]["enable_signup"] is False
    assert settings["Authenticator"]["admin_users"] == []
    assert sorted(settings["Authenticator"]["allowed_users"]) == sorted(
        ["instructor", "ta", "trainee1", "trainee2", "trainee3"]
    )
    assert settings["Spawner"]["default_url"] == "/lab"
    # own origins: servers at <user>.localhost, services at <name>--service.localhost
    assert hub["subdomain_host"] == "http://localhost:8000"
    assert "object-src 'none'" in hub["tornado_settings"]["headers"]["Content-Security-Policy"]
    # the formgrader loads nbgrader's formgrader through medai's hardening extension only
    fg_cmd = services["medai101"]["command"]
    assert "--ServerApp.jpserver_extensions=nbgrader.server_extensions.formgrader=False" in fg_cmd
    assert "--ServerApp.jpserver_extensions=medai.hub.staffpages=True" in fg_cmd
    # local profile: the GPU profile needs a cluster, so the CPU one applies here
    assert settings["Spawner"]["mem_limit"] == "4G"


def test_trainee_sandbox_binds_only_its_own_things(tmp_path):
    layout = StateLayout(tmp_path / "state")
    argv = user_sandbox_argv(layout, "alice", ["c1"], SOFTWARE)
    b = binds(argv)
    root = str(layout.root)
    state_binds = {inside: host for inside, (_, host) in b.items() if host.startswith(root)}
    assert state_binds == {
        "/etc/passwd": str(layout.sandbox_etc("alice") / "passwd"),
        "/etc/group": str(layout.sandbox_etc("alice") / "group"),
        "/opt/medai/etc/jupyter": str(layout.sandbox_etc("alice") / "jupyter"),
        "/home/alice": str(layout.home("alice")),
        "/data": str(layout.public_data),
        "/srv/medai/exchange/c1/outbound": str(layout.exchange("c1") / "outbound"),
        "/srv/medai/exchange/c1/inbound": str(layout.drop("c1", "alice")),
        "/srv/medai/exchange/c1/feedback": str(layout.user_feedback("c1", "alice")),
        "/srv/medai/catalog": str(layout.catalog),  # read-only: see `writable` below
    }
    writable = {inside for inside, (kind, _) in b.items() if kind == "--bind"}
    assert writable == {"/home/alice", "/srv/medai/exchange/c1/inbound"}
    assert "/etc/shadow" not in b and "/etc" not in b
    for flag in ("--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"):
        assert flag in argv  # --unshare-all: own network namespace too
    sizes = {argv[i + 3]: int(argv[i + 1]) for i, a in enumerate(argv) if a == "--size"}
    assert set(sizes) == {"/tmp", "/dev/shm", "/srv/medai/exchange"}
    assert all(v > 0 for v in sizes.values())
    assert argv[argv.index("--remount-ro") + 1] == "/"
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[-1] == "--"


def test_formgrader_sees_course_and_exchange_but_not_hub_or_homes(tmp_path):
    layout = StateLayout(tmp_path / "state")
    b = binds(formgrader_argv(layout, "c1", SOFTWARE))
    hosts = [host for _, host in b.values()]
    assert str(layout.course_dir("c1")) in hosts
    assert b["/data"] == ("--ro-bind", str(layout.public_data))  # public only: hidden data
    assert not any(layout.hidden_data.is_relative_to(h) for h in hosts)  # are graded outside
    assert str(layout.data) not in hosts
    assert not any(h.startswith(str(layout.hub)) for h in hosts)
    assert not any(h.startswith(str(layout.root / "homes")) for h in hosts)
    assert b["/srv/medai/exchange/c1/inbound"] == (
        "--ro-bind",
        str(layout.exchange("c1") / "inbound"),
    )


def test_user_jupyter_config_points_nbgrader_at_the_sandbox_exchange(tmp_path):
    layout = StateLayout(tmp_path)
    prepare_user(layout, "alice", ["c1"])
    d = layout.sandbox_etc("alice") / "jupyter"
    nbcfg = (d / "nbgrader_config.py").read_text()
    assert "c.Exchange.root = '/srv/medai/exchange'" in nbcfg
    assert "path_includes_course = True" in nbcfg
    server = (d / "jupyter_server_config.json").read_text()
    assert '"nbgrader.server_extensions.formgrader": false' in server
    assert json.loads(server)["KernelManager"]["transport"] == "ipc"
    env = sandbox_env("alice", SOFTWARE)
    # only the generated, read-only configuration; never the trainee's ~/.jupyter
    assert env["JUPYTER_CONFIG_DIR"] == "/opt/medai/etc/jupyter"
    assert "JUPYTER_DATA_DIR" not in env  # the default, in the home; extensions: below
    assert all("/home/" not in p for p in json.loads(server)["LabServerApp"]["labextensions_path"])
    assert "JUPYTER_CONFIG_PATH" not in env and "JUPYTER_PATH" not in env
    passwd = (layout.sandbox_etc("alice") / "passwd").read_text()
    assert "alice:x:1000:1000::/home/alice" not in passwd  # gecos holds the name
    assert "alice:x:1000:1000:alice:/home/alice:/bin/bash" in passwd
    assert layout.drop("c1", "alice").is_dir() and layout.home("alice").is_dir()


def test_profiles_filtered_by_role(demo_config):
    from medai.config import parse_config

    data = demo_config.model_dump()
    data["profiles"][1]["groups"] = ["instructors"]
    cfg = parse_config(data)
    assert [p.name for p in profiles_for(cfg, "trainee1")] == ["cpu"]
    assert [p.name for p in profiles_for(cfg, "instructor")] == ["cpu", "gpu"]
    assert profiles_for(cfg, "stranger") == []


def test_settings_file_is_valid_jupyterhub_config(settings, tmp_path):
    """The settings apply cleanly to JupyterHub's real configurable classes."""
    import json

    from traitlets.config import Config

    from medai.hub.hubconfig import apply_settings

    c = Config()
    apply_settings(c, json.loads(json.dumps(settings)))
    from jupyterhub.app import JupyterHub

    app = JupyterHub(config=c)
    assert app.bind_url == "http://127.0.0.1:8000"
    assert Path(app.cookie_secret_file).parent == tmp_path / "hub"


def test_a_lan_name_serves_everyone_on_its_subdomains(demo_config, tmp_path):
    settings = build_hub_settings(
        demo_config,
        StateLayout(tmp_path),
        ip="0.0.0.0",
        ports=Ports(8000, 8081, 8001, 9000, 9001),
        proxy_command=["chp"],
        software=SOFTWARE,
        public_host="medai.lan",
    )
    assert settings["JupyterHub"]["subdomain_host"] == "http://medai.lan:8000"
    assert settings["JupyterHub"]["bind_url"] == "http://0.0.0.0:8000"


def test_jupyterhub_puts_users_and_services_where_origins_says(settings):
    """JupyterHub's own naming, from the generated settings, matches medai.hub.origins."""
    import json

    from jupyterhub.app import JupyterHub
    from traitlets.config import Config

    from medai.hub.hubconfig import apply_settings
    from medai.hub.origins import Origins

    c = Config()
    apply_settings(c, json.loads(json.dumps(settings)))
    app = JupyterHub(config=c)
    o = Origins("localhost", 8000)
    domain = app.domain
    assert app.subdomain_host == o.hub
    assert app.subdomain_hook("trainee1", domain, kind="user") == o.user_host("trainee1")
    assert app.subdomain_hook("medai101", domain, kind="service") == o.service_host("medai101")
