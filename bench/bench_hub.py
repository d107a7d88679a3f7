"""Benchmark: login-to-JupyterLab-ready latency on the embedded hub, alone and in a burst.

Prints, for the medai hub (each server in a bubblewrap sandbox) and, side by side, for the same
JupyterHub with JupyterHub's own ``SimpleLocalProcessSpawner`` (no isolation: what a quick
one-machine install would otherwise use):

- one trainee, in headless Chromium: time from pressing "Sign in" until JupyterLab's main area
  is on screen (median and p95 over --repeat fresh logins, server stopped in between);
- --burst trainees logging in at once over HTTP (login form, spawn, JupyterLab page and its
  settings API answered): median and p95 latency, and the hub API's p95 during the burst.

Usage: python bench/bench_hub.py [--repeat 5] [--burst 20] [--only medai|simple]
No timed assertions: it prints figures.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

from medai.config import parse_config
from medai.hub.client import HubUser
from medai.hub.launcher import free_port, start_hub

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]


def course(n: int) -> tuple[Path, object]:
    data = {
        "course": {"id": "bench", "title": "Benchmark course"},
        "people": {"instructors": ["teacher"], "trainees": [f"t{i:02d}" for i in range(n)]},
    }
    d = Path(tempfile.mkdtemp(prefix="medai-bench-"))
    (d / "course.yaml").write_text(yaml.safe_dump(data))
    return d / "course.yaml", parse_config(data)


def simple_spawner(settings: dict) -> None:
    settings["JupyterHub"]["spawner_class"] = "jupyterhub.spawner.SimpleLocalProcessSpawner"
    home = Path(tempfile.mkdtemp(prefix="medai-bench-homes-"))
    settings["SimpleLocalProcessSpawner"] = {"home_dir_template": str(home / "{username}")}
    settings["Spawner"]["cmd"] = settings["BwrapSpawner"]["server_cmd"] + ["--allow-root"]


def stop_server(url: str, user: HubUser) -> None:
    xsrf = user._cookie("_xsrf", "/hub/")
    user.client.delete(f"/hub/api/users/{user.name}/server", headers={"X-XSRFToken": xsrf})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = user.client.get(f"/hub/api/users/{user.name}")
        if not r.json().get("servers"):
            return
        time.sleep(0.3)


def browser_logins(hub, passwords, repeat: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for _ in range(repeat):
            ctx = b.new_context(viewport={"width": 1280, "height": 800})
            page = ctx.new_page()
            page.goto(hub.url + "/hub/login")
            page.fill("#username_input", "t00")
            page.fill("#password_input", passwords["t00"])
            t0 = time.perf_counter()
            page.click("#login_submit")
            page.wait_for_selector("#jp-main-dock-panel", timeout=180_000)
            times.append(time.perf_counter() - t0)
            ctx.close()
            u = HubUser(hub.url, "t00", passwords["t00"])
            stop_server(hub.url, u)
            u.close()
        b.close()
    return times


def http_ready(url: str, name: str, password: str) -> float:
    t0 = time.perf_counter()
    u = HubUser(url, name, password)
    u.start_server(timeout=300)
    u.api("GET", "/lab/api/settings").raise_for_status()
    dt = time.perf_counter() - t0
    u.close()
    return dt


def burst(hub, passwords, n: int) -> tuple[list[float], list[float]]:
    api_times: list[float] = []
    done = threading.Event()

    def poll_api():
        with httpx.Client(base_url=hub.url, timeout=30) as c:
            while not done.is_set():
                t0 = time.perf_counter()
                c.get("/hub/api/")
                api_times.append(time.perf_counter() - t0)
                time.sleep(0.2)

    poller = threading.Thread(target=poll_api, daemon=True)
    poller.start()
    names = [f"t{i:02d}" for i in range(1, n + 1)]
    with ThreadPoolExecutor(max_workers=n) as pool:
        lat = list(pool.map(lambda u: http_ready(hub.url, u, passwords[u]), names))
    done.set()
    poller.join()
    return lat, api_times


def run(kind: str, repeat: int, n_burst: int) -> dict:
    cfg_path, cfg = course(n_burst + 1)
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
    try:
        single = browser_logins(hub, passwords, repeat)
        lat, api = burst(hub, passwords, n_burst)
    finally:
        hub.stop(timeout=120)
    return {"single": single, "burst": lat, "api": api}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--burst", type=int, default=20)
    ap.add_argument("--only", choices=["medai", "simple"])
    a = ap.parse_args()
    kinds = [a.only] if a.only else ["medai", "simple"]
    results = {}
    for kind in kinds:
        print(f"running {kind} ...", flush=True)
        results[kind] = run(kind, a.repeat, a.burst)
    label = {
        "medai": "medai hub (bubblewrap sandbox per server)",
        "simple": "JupyterHub SimpleLocalProcessSpawner (no isolation)",
    }
    print()
    print(
        f"{'hub':<55} {'login->Lab median':>18} {'p95':>7} "
        f"{a.burst:>3}-burst median {'p95':>7} {'hub API p95':>12}"
    )
    for kind, r in results.items():
        print(
            f"{label[kind]:<55} {statistics.median(r['single']):>16.2f} s {pct(r['single'], 0.95):>5.2f} s "
            f"{statistics.median(r['burst']):>14.2f} s {pct(r['burst'], 0.95):>5.2f} s "
            f"{pct(r['api'], 0.95) * 1000:>9.0f} ms"
        )
    print(
        f"(single: {a.repeat} browser logins each; burst: {a.burst} trainees at once over HTTP;"
        f" {len(results[kinds[0]]['api'])} hub API samples)"
    )


if __name__ == "__main__":
    main()
