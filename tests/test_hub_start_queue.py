"""The start queue and a responsive hub, on a real hub whose servers start one at a time.

This module's own hub (``servers.concurrent_starts: 1``, no culling): two trainees asking for
their servers at once both get one, the second after waiting in line with its place shown on
its progress stream; the hub answers its API while a burst of starts is under way; and it
answers while five logins are having their passwords checked (bcrypt runs in worker threads,
not on the hub's event loop: the passwords here are hashed with a high bcrypt cost, so a check
on the loop would hold every other request for seconds). No timing assertions: each check is
about order (what was answered before what), not about how fast.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import bcrypt
import httpx
import pytest
import yaml

from medai.config import parse_config
from medai.hub.auth import write_accounts
from medai.hub.launcher import free_port, start_hub
from medai.isolation.cgroups import Cgroup
from medai.testing.hub import HubUser

pytestmark = [pytest.mark.slow]

QUEUED = ["q1", "q2"]
BURST = ["q3", "q4", "q5"]
SLOW_LOGINS = [f"b{i}" for i in range(1, 6)]
SLOW_PASSWORD = "a-slow-bcrypt-password"
COURSE = {
    "course": {"id": "queue", "title": "Start queue"},
    "people": {"instructors": ["teacher"], "trainees": QUEUED + BURST + SLOW_LOGINS},
    "profiles": [{"name": "cpu", "display_name": "CPU", "cpu_limit": 1, "mem_limit": "1G"}],
    "servers": {"concurrent_starts": 1, "idle_server_minutes": 0, "idle_kernel_minutes": 0},
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("queue")
    path = tmp / "course.yaml"
    path.write_text(yaml.safe_dump(COURSE))
    state = tmp / "state"
    # cost 13: a few tenths of a second per check on an idle core, seconds on a busy one
    slow = bcrypt.hashpw(SLOW_PASSWORD.encode(), bcrypt.gensalt(rounds=13)).decode()
    write_accounts(state / "hub" / "accounts.json", dict.fromkeys(SLOW_LOGINS, slow))
    hub, passwords, _ = start_hub(
        parse_config(COURSE), config_path=path, state=state, port=free_port(), demo=True, echo=print
    )
    hub.passwords = passwords
    try:
        yield hub
    finally:
        hub.stop()


def timings(hub) -> dict[str, dict]:
    path = hub.layout.hub / "logs" / "timings.jsonl"
    return {r["user"]: r for r in map(json.loads, path.read_text().splitlines())}


def progress_events(user: HubUser, timeout: float = 300) -> list[dict]:
    """Every event of the user's spawn-pending progress stream (from the start of the spawn:
    the spawner replays them), until ready or failed. Waits for the spawn to be pending."""
    url = f"/hub/api/users/{user.name}/server/progress"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = []
        with user.client.stream("GET", url, timeout=timeout) as r:
            if r.status_code == 400:  # not pending yet: the request is on its way
                time.sleep(0.05)
                continue
            r.raise_for_status()
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                events.append(event)
                if event.get("ready") or event.get("failed"):
                    return events
    raise TimeoutError(f"no progress for {user.name}")


def request_server(user: HubUser) -> None:
    r = user.hub_api("POST", f"/users/{user.name}/server")
    assert r.status_code in (201, 202), r.text


def test_two_starts_at_once_one_waits_in_line_and_both_run(hub):
    users = [HubUser(hub.url, name, hub.passwords[name]) for name in QUEUED]
    try:
        with ThreadPoolExecutor(2 * len(users)) as pool:
            posts = [pool.submit(request_server, u) for u in users]  # both at once
            reading = [pool.submit(progress_events, u) for u in users]
            for p in posts:
                p.result()
            streams = {u.name: r.result() for u, r in zip(users, reading, strict=True)}
        for name, events in streams.items():
            assert events[-1].get("ready"), (name, events)
        t = timings(hub)
        first, second = sorted(QUEUED, key=lambda n: t[n]["granted"])
        assert t[second]["granted"] >= t[first]["ready"]  # one start at a time: it waited
        waiting = [e["message"] for e in streams[second] if "in the queue" in e["message"]]
        assert waiting and waiting[0].startswith("Place 1 in the queue"), streams[second]
        assert not [e for e in streams[first] if "in the queue" in e["message"]]
        for u in users:  # each in their JupyterLab (after the server's OAuth round trip)
            assert u.client.get(f"/user/{u.name}/lab").status_code == 200
            # its cgroup is found by name, and is back at the default CPU weight once up
            cg = Cgroup.find(hub.layout.server_cgroup(u.name))
            assert cg is not None and cg.memory_bytes()["resident"] > 0
            weights = [
                int((d / "cpu.weight").read_text()) for d in cg.dirs if (d / "cpu.weight").exists()
            ]
            weights += [
                int((d / "cpu.shares").read_text()) * 100 // 1024
                for d in cg.dirs
                if (d / "cpu.shares").exists()
            ]
            assert weights == [100]
    finally:
        for u in users:
            u.stop_server()
            u.close()


def test_the_hub_answers_its_api_during_a_burst_of_starts(hub):
    users = [HubUser(hub.url, name, hub.passwords[name]) for name in BURST]
    answers: list[int] = []
    pool = ThreadPoolExecutor(len(users))
    try:
        posts = [pool.submit(request_server, u) for u in users]  # all at once, not waited for
        watcher = users[0]
        pending_seen = 0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            answers.append(httpx.get(hub.url + "/hub/api/", timeout=60).status_code)
            model = watcher.client.get(f"/hub/api/users/{watcher.name}").json()
            answers.append(200 if model["name"] == watcher.name else 500)
            states = [
                u.client.get(f"/hub/api/users/{u.name}").json()["servers"].get("", {})
                for u in users
            ]
            pending_seen += sum(1 for s in states if s.get("pending"))
            if all(s.get("ready") for s in states):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the burst's servers did not all start")
        for p in posts:
            p.result()
        assert pending_seen > 0  # the calls were made while starts were under way
        assert set(answers) == {200}
    finally:
        pool.shutdown()
        for u in users:
            u.stop_server()
            u.close()


def test_the_hub_answers_while_passwords_are_being_checked(hub):
    done: dict[str, float] = {}

    def login(name: str) -> None:
        with httpx.Client(base_url=hub.url, timeout=300) as c:
            c.get("/hub/login")
            r = c.post(
                "/hub/login",
                data={"username": name, "password": SLOW_PASSWORD, "_xsrf": c.cookies["_xsrf"]},
                follow_redirects=False,
            )
            assert r.status_code == 302, (name, r.status_code)
            done[name] = time.monotonic()

    log_size = hub.log.stat().st_size
    threads = [threading.Thread(target=login, args=(n,)) for n in SLOW_LOGINS]
    for t in threads:
        t.start()
    # once the hub has begun checking a password ...
    deadline = time.monotonic() + 120
    while "checking the password of 'b" not in hub.log.read_text()[log_size:]:
        assert time.monotonic() < deadline, "no login reached the password check"
        time.sleep(0.02)
    # ... it still answers other requests before any of those checks is finished
    r = httpx.get(hub.url + "/hub/api/", timeout=120)
    answered = time.monotonic()
    for t in threads:
        t.join(300)
    assert r.status_code == 200
    assert sorted(done) == SLOW_LOGINS  # every login went through
    assert answered < min(done.values()), (answered, done)
