"""The parts of a class start, without a hub: the start queue, the generated settings (culler,
class service, scopes, server configuration), cgroup naming and CPU weight, the server entry."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from medai.config import parse_config
from medai.hub.hubconfig import Ports, build_hub_settings
from medai.hub.layout import StateLayout
from medai.hub.spawner import kernel_culling, prepare_user
from medai.hub.spawnqueue import BACKGROUND, ProgressLog, SpawnQueue
from medai.isolation.bwrap import Software
from medai.isolation.cgroups import Cgroup, probe, v1_shares
from medai.isolation.limits import Limits

SOFTWARE = Software(paths=("/opt/py",), path_env="/usr/bin")


def settings_for(tmp_path, servers: dict | None = None, token: str | None = "t" * 64) -> dict:
    data = {
        "course": {"id": "c1", "title": "C1"},
        "people": {"instructors": ["teach"], "tas": ["ta"], "trainees": ["ann", "ben"]},
    }
    if servers is not None:
        data["servers"] = servers
    return build_hub_settings(
        parse_config(data),
        StateLayout(tmp_path),
        ip="127.0.0.1",
        ports=Ports(8000, 8081, 8001, 9000, 9001, 9002),
        proxy_command=["chp"],
        software=SOFTWARE,
        class_cli_token=token,
    )


# -- the queue ---------------------------------------------------------------------------------


def run(coro) -> None:
    """Run ``coro`` in its own event loop and thread (Playwright's sync API, used by other
    tests of the same session, keeps an event loop running in this one)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


def test_queue_grants_in_order_shows_places_and_puts_background_starts_last():
    async def scenario():
        q = SpawnQueue(limit=1)
        a = q.join("a")
        b = q.join("b", BACKGROUND)
        c = q.join("c")  # interactive: goes before the background start b
        assert (q.place(a), q.place(c), q.place(b)) == (0, 1, 2)
        seen: list[tuple[str, int]] = []

        async def wait(t):
            async for place in q.places(t):
                seen.append((t.name, place))
            seen.append((t.name, 0))

        waiters = [asyncio.ensure_future(wait(t)) for t in (b, c)]
        await asyncio.sleep(0)
        q.leave(a)  # c gets the slot, b moves up to place 1
        await asyncio.sleep(0)
        assert c.granted and not b.granted and q.place(b) == 1
        q.leave(c)
        await asyncio.gather(*waiters)
        assert seen == [("b", 2), ("c", 1), ("c", 0), ("b", 1), ("b", 0)]
        q.leave(b)
        assert q.starting == 0 and q.waiting == 0

    run(scenario())


def test_a_cancelled_wait_leaves_the_line():
    async def scenario():
        q = SpawnQueue(limit=1)
        a, b, c = q.join("a"), q.join("b"), q.join("c")
        q.leave(b)  # b gave up (its start timed out) before its turn
        assert q.place(c) == 1
        q.leave(a)
        assert c.granted

    run(scenario())
    with pytest.raises(ValueError, match="at least 1"):
        SpawnQueue(0)


def test_progress_is_replayed_to_each_reader_then_followed():
    async def scenario():
        log = ProgressLog()
        log.add("one", 5)

        async def read(n):
            out = []
            async for e in log.follow():
                out.append(e["message"])
                if len(out) == n:
                    return out

        first = asyncio.ensure_future(read(2))
        await asyncio.sleep(0)
        log.add("two")
        assert await first == ["one", "two"]
        assert await read(2) == ["one", "two"]  # a page refresh reads it all again

    run(scenario())


# -- settings ----------------------------------------------------------------------------------


def test_culler_runs_as_a_service_with_only_the_scopes_it_needs(tmp_path):
    s = settings_for(tmp_path, {"idle_server_minutes": 20})
    services = {x["name"]: x for x in s["JupyterHub"]["services"]}
    cmd = services["idle-culler"]["command"]
    i = cmd.index("-m")
    assert cmd[i + 1] == "jupyterhub_idle_culler" and "--timeout=1200" in cmd
    roles = {r["name"]: r for r in s["JupyterHub"]["load_roles"]}
    assert roles["idle-culler"]["services"] == ["idle-culler"]
    assert sorted(roles["idle-culler"]["scopes"]) == sorted(
        ["list:users", "read:users:activity", "read:servers", "delete:servers"]
    )
    # culling off: no culler service, no role for it
    off = settings_for(tmp_path, {"idle_server_minutes": 0})
    assert "idle-culler" not in {x["name"] for x in off["JupyterHub"]["services"]}
    assert "idle-culler" not in {r["name"] for r in off["JupyterHub"]["load_roles"]}


def test_class_service_scopes_reach_only_the_trainees(tmp_path):
    s = settings_for(tmp_path)
    roles = {r["name"]: r for r in s["JupyterHub"]["load_roles"]}
    service = roles["c1-class-service"]
    assert service["services"] == ["medai-class"]
    assert service["scopes"] and all(x.endswith("!group=nbgrader-c1") for x in service["scopes"])
    assert not [x for x in service["scopes"] if x.startswith(("admin", "access:servers"))]
    assert roles["c1-class-cli"]["scopes"] == ["access:services!service=medai-class"]
    staff = roles["c1-class-staff"]
    assert staff["groups"] == ["formgrade-c1"]
    assert all(x.endswith("!service=medai-class") for x in staff["scopes"])
    for r in roles.values():  # nothing for the trainees' group
        assert "nbgrader-c1" not in r.get("groups", [])
    services = {x["name"]: x for x in s["JupyterHub"]["services"]}
    assert services["medai-class"]["url"] == "http://127.0.0.1:9002"
    assert services["medai-class-cli"] == {"name": "medai-class-cli", "api_token": "t" * 64}
    # without a command-line token there is no such service, and no role names it
    bare = settings_for(tmp_path, token=None)
    assert "medai-class-cli" not in {x["name"] for x in bare["JupyterHub"]["services"]}
    assert "c1-class-cli" not in {r["name"] for r in bare["JupyterHub"]["load_roles"]}


def test_spawner_settings_follow_the_course_config(tmp_path):
    s = settings_for(
        tmp_path,
        {"concurrent_starts": 3, "start_timeout_minutes": 12, "idle_kernel_minutes": 5},
    )
    assert s["Spawner"]["start_timeout"] == 720
    b = s["BwrapSpawner"]
    assert b["concurrent_starts"] == 3 and b["kernel_cull_idle_seconds"] == 300
    assert b["server_cmd"][1:] == ["-m", "medai.hub.singleuser"]


def test_server_config_culls_kernels_and_loads_only_what_trainees_use(tmp_path):
    layout = StateLayout(tmp_path)
    prepare_user(layout, "ann", ["c1"], kernel_culling(300))
    cfg = json.loads(
        (layout.sandbox_etc("ann") / "jupyter" / "jupyter_server_config.json").read_text()
    )
    assert cfg["MappingKernelManager"] == {
        "cull_idle_timeout": 300,
        "cull_interval": 150,
        "cull_connected": False,
        "cull_busy": False,
    }
    ext = cfg["ServerApp"]["jpserver_extensions"]
    for off in (
        "jupyter_lsp",
        "notebook",
        "notebook_shim",
        "nbgrader.server_extensions.formgrader",
    ):
        assert ext[off] is False
    for kept in ("jupyterlab", "nbgrader.server_extensions.assignment_list"):
        assert kept not in ext  # left on
    assert cfg["LabApp"]["news_url"] is None
    assert cfg["LabApp"]["extension_manager"] == "readonly"
    assert kernel_culling(0) == {}


def test_server_cgroup_names_are_stable_per_state_folder(tmp_path):
    a, b = StateLayout(tmp_path / "a"), StateLayout(tmp_path / "b")
    assert a.server_cgroup("ann") == StateLayout(tmp_path / "a").server_cgroup("ann")
    assert a.server_cgroup("ann") != b.server_cgroup("ann")
    assert a.server_cgroup("ann").endswith("-ann")


def test_servers_yield_the_cpu_to_the_hub():
    limits = Limits.server(memory_mb=1024, cpus=None, cpu_weight=20)
    assert limits.cpu_weight == 20 and v1_shares(limits) == 204  # the hub keeps 1024
    assert v1_shares(Limits()) == 1024


ENTRY = """
import sys
sys.argv = ["jupyterhub-singleuser", "--version"]
{start}
try:
    main()
except SystemExit:
    pass
print("jupyter_events" in sys.modules, sys.modules.get("rfc3987_syntax", "absent") is not None)
"""


def test_the_server_entry_does_not_build_the_rfc3987_grammars():
    ours = ENTRY.format(start="from medai.hub.singleuser import main")
    r = subprocess.run([sys.executable, "-c", ours], capture_output=True, text=True)
    assert r.stdout.split()[-2:] == ["True", "False"], r.stderr  # the server loaded, not it
    plain = ENTRY.format(start="from jupyterhub.singleuser import main")
    r = subprocess.run([sys.executable, "-c", plain], capture_output=True, text=True)
    assert r.stdout.split()[-2:] == ["True", "True"], r.stderr  # what the entry point saves


def test_a_starting_server_has_a_low_cpu_weight_and_gets_the_default_back():
    cg = Cgroup.create(f"medai-test-weight-{uuid.uuid4().hex[:8]}", Limits(cpu_weight=20))
    try:
        if "cpu_weight" not in cg.enforced:
            pytest.fail(f"no cpu controller for this test's cgroup: {probe().describe()}")

        def weight() -> int:
            for d in cg.dirs:
                if (d / "cpu.weight").exists():
                    return int((d / "cpu.weight").read_text())
                if (d / "cpu.shares").exists():
                    return int((d / "cpu.shares").read_text()) * 100 // 1024
            raise AssertionError("no cpu controller file")

        assert weight() in (19, 20)  # v1 rounds 204 shares back down
        assert Cgroup.find(cg.name).set_cpu_weight(None)
        assert weight() == 100
    finally:
        cg.kill_and_remove()
