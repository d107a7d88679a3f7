"""Benchmark: the start of a class on the embedded hub, and where the time goes.

For the medai hub (each server in a bubblewrap sandbox with its own cgroup and network) and,
side by side, the same JupyterHub with JupyterHub's own ``SimpleLocalProcessSpawner`` (no
isolation: what a quick one-machine install would otherwise use), it prints:

- **class opened**: a trainee whose server a class session started ahead of time
  (``medai class open``) logs in in headless Chromium; time from pressing "Sign in" until
  JupyterLab's main area is on screen (median and p95 over --repeat trainees). medai only;
- **cold**: the same for a trainee with no server (median, p95 over --repeat trainees);
- **burst**: --burst trainees logging in at once over HTTP, as a browser does (login form,
  the spawn page, the progress stream, JupyterLab's page and its settings API): when all are
  usable, and the median and p95 of each one's time;
- **hub API p95 during the burst**: ``GET /hub/api/`` every 0.2 s while the burst runs;
- **where the time goes**, per phase (medians), for the class-opened and cold logins: login and
  password check, spawn request, the start queue, file preparation, process start, the
  launcher's own phases (Python start, cgroup, bubblewrap, pasta), server start until it
  answers, JupyterLab's page, JupyterLab usable.

Usage: python bench/bench_hub.py [--repeat 5] [--burst 20] [--only medai|simple]
Quick: python bench/bench_hub.py --repeat 2 --burst 5
No timed assertions: it prints figures. On a shared machine the figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx
import yaml

from medai.config import parse_config
from medai.hub.launcher import free_port, start_hub
from medai.hub.roles import student_group
from medai.testing.browser import launch_chromium
from medai.testing.hub import HubUser

# Figures from issue 14, measured before this work on a quiet 2-core machine.
BEFORE = {"cold": 9.9, "burst_median": 72.0, "api_p95": 3.8}
GOALS = {"warm": 2.0, "cold": 5.0, "burst_all": 30.0, "api_p95": 0.5}


# -- URLs: the one place that knows where a user's server lives ------------------------------


def user_url(hub_url: str, user: str, path: str = "") -> str:
    return f"{hub_url}/user/{user}/{path.lstrip('/')}"


LAB_PAGE = re.compile(r"/user/[^/]+/lab/?(\?.*)?$")


# -- helpers ---------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(n)]


def course(repeat: int, n_burst: int) -> tuple[Path, object]:
    trainees = names("w", repeat) + names("c", repeat) + names("b", n_burst)
    data = {
        "course": {"id": "bench", "title": "Benchmark course"},
        "people": {"instructors": ["teacher"], "trainees": trainees},
    }
    d = Path(tempfile.mkdtemp(prefix="medai-bench-"))
    (d / "course.yaml").write_text(yaml.safe_dump(data))
    return d / "course.yaml", parse_config(data)


def simple_spawner(settings: dict) -> None:
    settings["JupyterHub"]["spawner_class"] = "jupyterhub.spawner.SimpleLocalProcessSpawner"
    home = Path(tempfile.mkdtemp(prefix="medai-bench-homes-"))
    settings["SimpleLocalProcessSpawner"] = {"home_dir_template": str(home / "{username}")}
    singleuser = str(
        Path(settings["BwrapSpawner"]["server_cmd"][0]).with_name("jupyterhub-singleuser")
    )
    settings["Spawner"]["cmd"] = [singleuser, "--allow-root"]


def stop_server(user: HubUser) -> None:
    xsrf = user._cookie("_xsrf", "/hub/")
    user.client.delete(f"/hub/api/users/{user.name}/server", headers={"X-XSRFToken": xsrf})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = user.client.get(f"/hub/api/users/{user.name}")
        if not r.json().get("servers"):
            return
        time.sleep(0.3)


# -- where the time goes ---------------------------------------------------------------------


def last_start(layout, user: str) -> dict | None:
    """The spawner's record of ``user``'s latest start (medai hub only)."""
    path = layout.hub / "logs" / "timings.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r["user"] == user]
    return rows[-1] if rows else None


def last_launch(layout, user: str) -> dict | None:
    """The launcher's phases of ``user``'s latest server (its ``medai-launch`` line)."""
    path = layout.hub / "logs" / f"server-{user}.log"
    if not path.exists():
        return None
    found = None
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("medai-launch "):
            found = json.loads(line.split(" ", 2)[2])
    return found


def phases(
    marks: dict, start: dict | None, launch: dict | None, running: bool = False
) -> dict[str, float]:
    """Seconds per phase of one browser login (absent phases are left out)."""
    out: dict[str, float] = {}
    click = marks["click"]
    out["login and password check"] = marks["login"] - click
    after_login = marks["login"]
    if start and start["requested"] >= click - 1:  # a start this login asked for
        out["spawn request (hub to spawner)"] = start["requested"] - after_login
        out["start queue"] = start["granted"] - start["requested"]
        out["user files prepared"] = start["prepared"] - start["granted"]
        out["process started (fork/exec)"] = start["launched"] - start["prepared"]
        if launch and launch["start"] >= start["launched"] - 1:
            out["  launcher: Python start"] = launch["start"] - start["launched"]
            out["  launcher: cgroup"] = launch["cgroup"]
            out["  launcher: bubblewrap start"] = launch["popen"] + launch["bwrap"]
            out["  launcher: pasta attach"] = launch["pasta"]
            began = launch["start"] + sum(launch[k] for k in ("cgroup", "popen", "bwrap", "pasta"))
            out["server start until it answers"] = start["ready"] - began
        else:
            out["sandbox and server start until it answers"] = start["ready"] - start["launched"]
        after_login = start["ready"]
        out["server ready to JupyterLab page"] = marks["lab_page"] - after_login
    elif running:
        out["login to JupyterLab page (server running)"] = marks["lab_page"] - after_login
    else:
        out["login to JupyterLab page (spawn included)"] = marks["lab_page"] - after_login
    out["JupyterLab page to UI usable"] = marks["ui"] - marks["lab_page"]
    return out


# -- scenarios -------------------------------------------------------------------------------


def browser_logins(hub, passwords: dict, users: list[str], stop_after: bool) -> list[dict]:
    """Each user logs in in a fresh browser context; the time marks of each login."""
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as p:
        b = launch_chromium(p)
        for user in users:
            ctx = b.new_context(viewport={"width": 1280, "height": 800})
            page = ctx.new_page()
            marks: dict[str, float] = {}

            def on_response(resp, marks=marks):
                now = time.time()
                req = resp.request
                if req.method == "POST" and urlparse(resp.url).path.endswith("/hub/login"):
                    marks.setdefault("login", now)
                elif resp.status == 200 and LAB_PAGE.search(resp.url.split("#")[0]):
                    if req.resource_type == "document":
                        marks.setdefault("lab_page", now)

            page.on("response", on_response)
            page.goto(hub.url + "/hub/login")
            page.fill("#username_input", user)
            page.fill("#password_input", passwords[user])
            marks["click"] = time.time()
            page.click("#login_submit")
            page.wait_for_selector("#jp-main-dock-panel", timeout=300_000)
            marks["ui"] = time.time()
            ctx.close()
            marks["user"] = user
            out.append(marks)
            if stop_after:
                u = HubUser(hub.url, user, passwords[user])
                stop_server(u)
                u.close()
        b.close()
    return out


def http_usable(hub_url: str, name: str, password: str) -> float:
    """One trainee over HTTP as a browser goes: login, spawn page, progress stream,
    JupyterLab's page, its settings API. Seconds until all answered."""
    t0 = time.perf_counter()
    u = HubUser(hub_url, name, password)
    r = u.client.get("/hub/spawn", follow_redirects=False, timeout=300)
    if "spawn-pending" in r.headers.get("location", ""):
        url = f"/hub/api/users/{name}/server/progress"
        with u.client.stream("GET", url, timeout=600) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event.get("failed"):
                        raise RuntimeError(f"{name}: {event.get('message')}")
                    if event.get("ready"):
                        break
    u.client.get(user_url(hub_url, name, "lab"), timeout=300).raise_for_status()
    u.client.get(user_url(hub_url, name, "lab/api/settings"), timeout=300).raise_for_status()
    dt = time.perf_counter() - t0
    u.close()
    return dt


def burst(hub, passwords: dict, users: list[str]) -> tuple[list[float], list[float], float]:
    api_times: list[float] = []
    done = threading.Event()

    def poll_api():
        with httpx.Client(base_url=hub.url, timeout=60) as c:
            while not done.is_set():
                t0 = time.perf_counter()
                c.get("/hub/api/")
                api_times.append(time.perf_counter() - t0)
                time.sleep(0.2)

    poller = threading.Thread(target=poll_api, daemon=True)
    poller.start()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(users)) as pool:
        lat = list(pool.map(lambda u: http_usable(hub.url, u, passwords[u]), users))
    all_usable = time.perf_counter() - t0
    done.set()
    poller.join()
    return lat, api_times, all_usable


def open_class(hub, users: list[str], timeout: float = 900) -> None:
    """Open a class session for ``users`` (as ``medai class open`` does) and wait until all
    their servers are warm."""
    info = json.loads(hub.layout.class_cli_file.read_text())
    auth = {"Authorization": f"token {info['token']}"}
    body = {"group": student_group("bench"), "users": users, "hours": 1}
    httpx.post(info["url"] + "api/sessions", json=body, headers=auth, timeout=60).raise_for_status()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = httpx.get(info["url"] + "api/sessions", headers=auth, timeout=60).json()
        counts = s["sessions"][-1]["counts"]
        if counts.get("warm", 0) == len(users):
            print(f"  class opened: {len(users)} warm; {s['memory']['text']}", flush=True)
            return
        time.sleep(2)
    raise TimeoutError(f"the class session's servers were not warm within {timeout} s: {counts}")


def run(kind: str, repeat: int, n_burst: int) -> dict:
    cfg_path, cfg = course(repeat, n_burst)
    state = Path(tempfile.mkdtemp(prefix=f"medai-bench-{kind}-"))
    hook = simple_spawner if kind == "simple" else None
    hub, passwords, _ = start_hub(
        cfg,
        config_path=cfg_path,
        state=state,
        port=free_port(),
        demo=True,
        echo=lambda m: None,
        settings_hook=hook,
        log_level="WARN",
    )
    out: dict = {}
    try:
        if kind == "medai":
            print("  opening a class session ...", flush=True)
            open_class(hub, names("w", repeat))
            marks = browser_logins(hub, passwords, names("w", repeat), stop_after=False)
            out["warm"] = [m["ui"] - m["click"] for m in marks]
            out["warm_phases"] = [phases(m, None, None, running=True) for m in marks]
        print("  cold logins ...", flush=True)
        marks = browser_logins(hub, passwords, names("c", repeat), stop_after=True)
        out["cold"] = [m["ui"] - m["click"] for m in marks]
        out["cold_phases"] = [
            phases(m, last_start(hub.layout, m["user"]), last_launch(hub.layout, m["user"]))
            for m in marks
        ]
        print(f"  {n_burst} logins at once ...", flush=True)
        out["burst"], out["api"], out["burst_all"] = burst(hub, passwords, names("b", n_burst))
    finally:
        hub.stop(timeout=120)
    return out


# -- report ----------------------------------------------------------------------------------


def fmt(v: float | None, unit: str = "s") -> str:
    if v is None:
        return "n/a"
    return f"{v * 1000:.0f} ms" if unit == "ms" else f"{v:.2f} s"


def report(results: dict, repeat: int, n_burst: int) -> None:
    label = {"medai": "medai hub (sandbox per server)", "simple": "SimpleLocalProcessSpawner"}
    cols = [k for k in ("medai", "simple") if k in results]
    rows = [
        ("login -> Lab usable, class opened (median)", "warm", median, "s", GOALS["warm"], None),
        ("  p95", "warm", lambda v: pct(v, 0.95), "s", None, None),
        ("login -> Lab usable, cold (median)", "cold", median, "s", GOALS["cold"], BEFORE["cold"]),
        ("  p95", "cold", lambda v: pct(v, 0.95), "s", None, None),
        (
            f"{n_burst} cold logins at once: all usable",
            "burst_all",
            None,
            "s",
            GOALS["burst_all"],
            None,
        ),
        ("  each: median", "burst", median, "s", None, BEFORE["burst_median"]),
        ("  each: p95", "burst", lambda v: pct(v, 0.95), "s", None, None),
        (
            "hub API p95 during the burst",
            "api",
            lambda v: pct(v, 0.95),
            "ms",
            GOALS["api_p95"],
            BEFORE["api_p95"],
        ),
    ]
    print()
    head = f"{'':<44}" + "".join(f"{label[k]:>32}" for k in cols) + f"{'goal':>10}{'before':>10}"
    print(head)
    for title, key, agg, unit, goal, before in rows:
        cells = ""
        for k in cols:
            v = results[k].get(key)
            if v is None or (isinstance(v, list) and not v):
                cells += f"{'n/a':>32}"
            else:
                cells += f"{fmt(agg(v) if agg else v, unit):>32}"
        g = f"<= {fmt(goal, unit)}" if goal else ""
        b = fmt(before) if before else ""
        print(f"{title:<44}{cells}{g:>10}{b:>10}")
    print(
        f"(class opened and cold: {repeat} browser logins each; burst: {n_burst} trainees at once "
        f"over HTTP; 'before': issue 14, a quiet 2-core machine, 20 at once)"
    )
    for kind in cols:
        for scenario in ("warm_phases", "cold_phases"):
            runs = results[kind].get(scenario)
            if not runs:
                continue
            title = "class opened" if scenario == "warm_phases" else "cold"
            print(f"\nwhere the time goes: {label[kind]}, {title} (median of {len(runs)})")
            for phase in runs[0]:
                vals = [r[phase] for r in runs if phase in r]
                print(f"  {phase:<46}{fmt(median(vals)):>10}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5, help="browser logins per scenario")
    ap.add_argument("--burst", type=int, default=20, help="trainees logging in at once")
    ap.add_argument("--only", choices=["medai", "simple"])
    ap.add_argument(
        "--baseline",
        metavar="REV",
        help="also run the hub benchmark of an earlier commit (its own code) in this run, e.g. "
        "the commit before the trust work: 09f0b45",
    )
    a = ap.parse_args()
    kinds = [a.only] if a.only else ["medai", "simple"]
    results = {}
    for kind in kinds:
        print(f"running {kind} ...", flush=True)
        results[kind] = run(kind, a.repeat, a.burst)
    baseline = None
    if a.baseline:
        from baseline import run_baseline

        print(f"running the benchmark of {a.baseline} ...", flush=True)
        args = ["--only", "medai", "--repeat", str(a.repeat), "--burst", str(a.burst)]
        baseline = run_baseline(a.baseline, args)
    report(results, a.repeat, a.burst)
    if baseline is not None:
        print(f"\n--- {a.baseline} (before this isolation), same machine, same run ---")
        print(baseline.strip())


if __name__ == "__main__":
    main()
