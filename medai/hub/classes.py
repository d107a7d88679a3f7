"""Class sessions: the trainees' servers started before the class, so a login lands in a
running JupyterLab.

An instructor or TA opens a session for a group (the course's trainees) on the class page
(``/services/medai-class/``) or with ``medai class open``. This hub-managed service then:

1. starts the group's servers in the background, ``--pace`` at a time (the hub's start queue
   puts trainees who are waiting in a browser first), and no further server once the machine's
   free memory, less ``--reserve-mb``, would not hold one more warm server (measured on the
   running ones: their cgroups, :meth:`medai.hub.layout.StateLayout.server_cgroup`);
2. keeps each *warm* server (started, not used yet by its trainee) from being culled as idle,
   by reporting activity for it every ``--keepalive-seconds``; once its trainee has used it
   (the hub saw them after it was ready), it is an ordinary server, and the idle culler stops
   it after the course's idle time;
3. when the session ends (closed, or after ``--session-hours``) stops keeping them warm: the
   idle culler then stops each server nobody uses for the course's idle time (it is not stopped
   at once: the hub learns that a trainee uses a server minutes late, and a server in use must
   not lose its kernels).

It runs outside every sandbox with its own token, which may act only on the trainees' servers
(``list:users``, ``read:users``, ``servers`` and ``users:activity``, each ``!group=nbgrader-<course>``: see
:mod:`medai.hub.roles`). Only course staff reach it: JupyterHub's OAuth checks their
``access:services!service=medai-class`` scope (anyone else gets 403), its forms are
XSRF-protected (JupyterHub's service auth refuses a cookie-authenticated POST without the
token), and its page loads nothing but itself (no script at all; a strict content security
policy). The command line calls the same JSON API with the token ``medai up`` writes to
``<state>/hub/class-cli.json`` (mode 0600), whose only scope is to call this service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web
from tornado.escape import json_decode
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.template import Template

from medai.hub.layout import StateLayout
from medai.isolation.cgroups import ROOT as CGROUP_ROOT
from medai.isolation.cgroups import Cgroup, own_cgroups

log = logging.getLogger("medai.classes")

MiB = 2**20
UNMEASURED_WARM_MB = 250  # what a warm server is assumed to hold before one was measured
TICK_SECONDS = 2.0
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

# a server's state in a session, as the page and the command line show it
WAITING = "waiting"  # not started yet
NO_ROOM = "no room"  # not started: the machine's memory would not hold it
STARTING = "starting"
WARM = "warm"  # running, not used yet by its trainee
IN_USE = "in use"  # its trainee has been seen since it turned warm (informational)
STOPPED = "stopped"  # was running, is not any more (stopped, culled, or its start failed)
RELEASED = "released"  # the session ended: no longer kept warm, the idle culler decides
NOT_STARTED = "not started"  # the session ended before its turn


def _now() -> float:
    return time.time()


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _when(epoch: float | None) -> str:
    """A time as the page shows it (UTC, to the minute)."""
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------------------------------------
# sessions, as plain data


@dataclass
class ServerRecord:
    state: str = WAITING
    warm_since: float | None = None  # when this service first saw it ready
    last_keepalive: float = 0.0
    note: str = ""


@dataclass
class Session:
    id: str
    group: str
    users: list[str]
    opened_by: str
    opened_at: float
    ends_at: float
    closed_at: float | None = None
    closed_by: str | None = None
    servers: dict[str, ServerRecord] = field(default_factory=dict)

    def is_open(self, now: float) -> bool:
        return self.closed_at is None and now < self.ends_at

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for rec in self.servers.values():
            out[rec.state] = out.get(rec.state, 0) + 1
        return out

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("opened_at", "ends_at", "closed_at"):
            d[k] = _iso(d[k])
        d["open"] = self.is_open(_now())
        d["counts"] = self.counts()
        d["servers"] = {
            u: {"state": r.state, "warm_since": _iso(r.warm_since), "note": r.note}
            for u, r in self.servers.items()
        }
        return d

    @classmethod
    def from_json(cls, d: dict) -> Session:
        servers = {
            u: ServerRecord(
                state=r["state"], warm_since=_epoch(r.get("warm_since")), note=r.get("note", "")
            )
            for u, r in d.get("servers", {}).items()
        }
        return cls(
            id=d["id"],
            group=d["group"],
            users=list(d["users"]),
            opened_by=d["opened_by"],
            opened_at=_epoch(d["opened_at"]),
            ends_at=_epoch(d["ends_at"]),
            closed_at=_epoch(d.get("closed_at")),
            closed_by=d.get("closed_by"),
            servers=servers,
        )


class SessionStore:
    """The sessions, kept in ``<state>/hub/class-sessions.json`` across restarts."""

    KEEP_CLOSED = 20

    def __init__(self, path: Path):
        self.path = path
        self.sessions: list[Session] = []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.sessions = [Session.from_json(d) for d in data.get("sessions", [])]
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as exc:
            log.error("%s is unreadable (%s); starting with no sessions", path, exc)

    def save(self) -> None:
        closed = [s for s in self.sessions if s.closed_at is not None]
        drop = {id(s) for s in closed[: max(0, len(closed) - self.KEEP_CLOSED)]}
        self.sessions = [s for s in self.sessions if id(s) not in drop]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"sessions": [s.to_json() for s in self.sessions]}, fh, indent=1)
        os.replace(tmp, self.path)

    def open_for(self, group: str, now: float) -> Session | None:
        return next((s for s in self.sessions if s.group == group and s.is_open(now)), None)

    def get(self, sid: str) -> Session | None:
        return next((s for s in self.sessions if s.id == sid), None)


# ---------------------------------------------------------------------------------------------
# memory


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (no limit) -> None


def available_memory_mb() -> int:
    """Memory still free for more servers: the kernel's MemAvailable, or less where this
    process's memory cgroup (which holds the servers' cgroups too) is limited."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    own = own_cgroups()
    if "" in own and "memory" not in own:  # v2
        d = CGROUP_ROOT / own[""].lstrip("/")
        limit, usage = _read_int(d / "memory.max"), _read_int(d / "memory.current")
    else:
        d = CGROUP_ROOT / "memory" / own.get("memory", "/").lstrip("/")
        limit = _read_int(d / "memory.limit_in_bytes")
        usage = _read_int(d / "memory.usage_in_bytes")
    if limit is not None and usage is not None and limit < 2**60:
        avail = min(avail, limit - usage) if avail is not None else limit - usage
    return max(0, (avail or 0) // MiB)


def memory_report(
    layout: StateLayout,
    running: list[str],
    warm: list[str],
    *,
    reserve_mb: int,
    server_limit_mb: int,
) -> dict:
    """What a warm server holds (the median over the warm ones, else over every running
    one), what the machine has left, and so how many more warm servers fit."""
    measured: dict[str, dict[str, int]] = {}
    for user in running:
        cg = Cgroup.find(layout.server_cgroup(user))
        m = cg.memory_bytes() if cg else {}
        if m:
            measured[user] = m
    sample = [measured[u]["resident"] for u in warm if u in measured]
    basis = "warm servers"
    if not sample:
        sample = [m["resident"] for m in measured.values()]
        basis = "running servers"
    per_server = round(statistics.median(sample) / MiB) if sample else None
    estimate = max(1, per_server or UNMEASURED_WARM_MB)
    available = available_memory_mb()
    fit_more = max(0, int((available - reserve_mb) // estimate))
    if per_server is None:
        text = f"No server is running to measure yet; assuming about {estimate} MiB each."
    else:
        text = f"A warm server holds about {per_server} MiB (median of {len(sample)} {basis})."
    text += (
        f" {available} MiB are free ({reserve_mb} MiB kept in reserve): about {fit_more} more "
        f"warm server(s) fit. A server a trainee works in may grow to its limit of "
        f"{server_limit_mb} MiB."
    )
    return {
        "warm_server_mb": per_server,
        "estimate_mb": estimate,
        "measured_servers": len(sample),
        "available_mb": available,
        "reserve_mb": reserve_mb,
        "fit_more": fit_more,
        "server_limit_mb": server_limit_mb,
        "running": len(running),
        "text": text,
    }


# ---------------------------------------------------------------------------------------------
# the hub's REST API, with this service's token


class HubAPI:
    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.token = token
        self.client = AsyncHTTPClient()

    async def call(self, method: str, path: str, body: dict | None = None, **headers) -> object:
        req = HTTPRequest(
            self.url + path,
            method=method,
            headers={"Authorization": f"token {self.token}", **headers},
            body=json.dumps(body) if body is not None else (None if method == "GET" else ""),
            allow_nonstandard_methods=True,
            request_timeout=60,
        )
        resp = await self.client.fetch(req)
        return json.loads(resp.body) if resp.body else None

    async def users(self) -> list[dict]:
        """Every user this token may read (the group's), page by page."""
        out: list[dict] = []
        offset = 0
        while True:
            page = await self.call(
                "GET",
                f"/users?limit=200&offset={offset}",
                Accept="application/jupyterhub-pagination+json",
            )
            items = page["items"] if isinstance(page, dict) else page
            out += items
            nxt = page.get("_pagination", {}).get("next") if isinstance(page, dict) else None
            if not nxt or not items:
                return out
            offset = nxt["offset"]

    async def start(self, user: str) -> None:
        await self.call("POST", f"/users/{quote(user)}/server", {})

    async def stop(self, user: str) -> None:
        await self.call("DELETE", f"/users/{quote(user)}/server")

    async def keep_active(self, user: str, when: float) -> None:
        body = {"servers": {"": {"last_activity": _iso(when)}}}
        await self.call("POST", f"/users/{quote(user)}/activity", body)


# ---------------------------------------------------------------------------------------------
# the warmer


@dataclass
class Settings:
    layout: StateLayout
    course: str
    title: str
    groups: list[str]
    session_hours: float
    reserve_mb: int
    server_limit_mb: int
    pace: int
    keepalive_seconds: int


class ClassWarmer:
    """Brings every open session's servers to where they should be, one tick at a time."""

    def __init__(self, settings: Settings, hub: HubAPI, store: SessionStore):
        self.s = settings
        self.hub = hub
        self.store = store
        self.models: dict[str, dict] = {}  # the group's users as the hub last said
        self.lock = asyncio.Lock()

    # -- reading the hub ---------------------------------------------------------------------

    async def refresh(self) -> None:
        self.models = {m["name"]: m for m in await self.hub.users()}

    def members(self, group: str) -> list[str]:
        return sorted(u for u, m in self.models.items() if group in (m.get("groups") or []))

    def running(self) -> list[str]:
        return [u for u, m in self.models.items() if (m.get("servers") or {}).get("")]

    def memory(self) -> dict:
        warm = [
            u
            for s in self.store.sessions
            for u, r in s.servers.items()
            if r.state == WARM and s.closed_at is None
        ]
        return memory_report(
            self.s.layout,
            self.running(),
            warm,
            reserve_mb=self.s.reserve_mb,
            server_limit_mb=self.s.server_limit_mb,
        )

    # -- opening and closing -----------------------------------------------------------------

    async def open(
        self, group: str, hours: float | None, by: str, users: list[str] | None = None
    ) -> Session:
        if group not in self.s.groups:
            raise ValueError(
                f"no class sessions for group '{group}': this service serves "
                f"{', '.join(self.s.groups)}"
            )
        hours = self.s.session_hours if hours is None else hours
        if not 0 < hours <= 24:
            raise ValueError(f"hours must be above 0 and at most 24, not {hours}")
        async with self.lock:
            now = _now()
            existing = self.store.open_for(group, now)
            if existing is not None:
                raise FileExistsError(
                    f"session {existing.id} for {group} is already open (until "
                    f"{_iso(existing.ends_at)}); close it first"
                )
            await self.refresh()
            members = self.members(group)
            if users:
                strangers = sorted(set(users) - set(members))
                if strangers:
                    raise ValueError(
                        f"not in group {group}: {', '.join(strangers)} (members: "
                        f"{', '.join(members) or 'none'})"
                    )
            users = sorted(set(users)) if users else members
            session = Session(
                id=secrets.token_hex(4),
                group=group,
                users=users,
                opened_by=by,
                opened_at=now,
                ends_at=now + hours * 3600,
                servers={u: ServerRecord() for u in users},
            )
            self.store.sessions.append(session)
            self.store.save()
        log.info("session %s opened by %s for %s (%d users)", session.id, by, group, len(users))
        asyncio.ensure_future(self.tick())
        return session

    async def close(self, sid: str, by: str) -> Session:
        async with self.lock:
            session = self.store.get(sid)
            if session is None:
                raise KeyError(f"no session '{sid}'")
            if session.closed_at is None:
                await self._end(session, by)
        return session

    async def _end(self, session: Session, by: str) -> None:
        """Stop keeping the session's servers warm. None is stopped here: the hub's view of
        whether a trainee is using a server lags by minutes (it polls the proxy and the
        servers report every few minutes), and stopping one in use would lose their kernels.
        The idle culler stops each one idle for the course's idle time, as any other."""
        for rec in session.servers.values():
            if rec.state in (WARM, STARTING, IN_USE):
                rec.state, rec.note = RELEASED, "no longer kept warm; stops once idle"
            elif rec.state in (WAITING, NO_ROOM):
                rec.state, rec.note = NOT_STARTED, "the session ended before its turn"
        session.closed_at = _now()
        session.closed_by = by
        self.store.save()
        log.info("session %s closed by %s", session.id, by)

    # -- one tick ------------------------------------------------------------------------------

    async def tick(self) -> None:
        async with self.lock:
            now = _now()
            sessions = [s for s in self.store.sessions if s.closed_at is None]
            if not sessions:
                return
            await self.refresh()
            for s in sessions:
                if not s.is_open(now):
                    await self._end(s, "the session's time")
                    continue
                await self._follow(s, now)
            await self._start_more(now)
            self.store.save()

    async def _follow(self, s: Session, now: float) -> None:
        for user, rec in s.servers.items():
            model = self.models.get(user)
            if model is None:
                rec.state, rec.note = STOPPED, "no longer in the group"
                continue
            server = (model.get("servers") or {}).get("")
            if server and server.get("ready"):
                if rec.warm_since is None:
                    rec.warm_since = now
                seen = _epoch(model.get("last_activity")) or 0
                if rec.state == IN_USE or seen > rec.warm_since:
                    rec.state, rec.note = IN_USE, ""
                    continue
                rec.state, rec.note = WARM, ""
                if now - rec.last_keepalive >= self.s.keepalive_seconds:
                    try:
                        await self.hub.keep_active(user, now)
                        rec.last_keepalive = now
                    except HTTPClientError as exc:
                        log.warning("could not keep %s's server warm: %s", user, exc)
            elif server and server.get("pending") == "spawn":
                rec.state = STARTING
            elif server:
                rec.state = STOPPED
            elif rec.state in (STARTING, WARM, IN_USE):
                rec.state = STOPPED
                rec.note = "not running any more (stopped, culled, or it failed to start)"

    async def _start_more(self, now: float) -> None:
        starting = sum(
            1 for s in self.store.sessions for r in s.servers.values() if r.state == STARTING
        )
        room = self.memory()["fit_more"] if starting < self.s.pace else 0
        for s in self.store.sessions:
            if not s.is_open(now):
                continue
            for user, rec in s.servers.items():
                if rec.state not in (WAITING, NO_ROOM):
                    continue
                if starting >= self.s.pace:
                    return
                if room <= 0:
                    rec.state, rec.note = NO_ROOM, "the machine's free memory would not hold it"
                    continue
                try:
                    await self.hub.start(user)
                except HTTPClientError as exc:
                    if exc.code != 400:  # 400: it is starting or running already
                        rec.note = f"could not start it: HTTP {exc.code}"
                        continue
                rec.state, rec.note = STARTING, ""
                starting += 1
                room -= 1

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("class session round failed; trying again")
            await asyncio.sleep(TICK_SECONDS)


# ---------------------------------------------------------------------------------------------
# the page and the JSON API

PAGE = Template(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Class sessions: {{ s.title }}</title>
{% if refresh %}<meta http-equiv="refresh" content="5">{% end %}
<link rel="stylesheet" href="{{ prefix }}static/class.css">
</head><body>
<h1>Class sessions <small>{{ s.title }}</small></h1>
<p>Open a session a few minutes before class: the trainees' JupyterLab servers start in the
background and a trainee who logs in lands in a running one. Servers are kept warm while the
session is open; after it ends, each one nobody uses is stopped once it has been idle for the
course's idle time.</p>
<h2>Memory</h2>
<p id="memory">{{ memory["text"] }}</p>
<h2>Open a session</h2>
<form method="post" action="{{ prefix }}open">{% raw xsrf_form_html() %}
<label>Group <select name="group">{% for g in s.groups %}<option value="{{ g }}">{{ g }} (the course's trainees)</option>{% end %}</select></label>
<label>Hours <input name="hours" type="number" min="0.1" max="24" step="0.1" value="{{ s.session_hours }}"></label>
<button type="submit" id="open">Open</button>
</form>
{% if error %}<p class="error" id="error">{{ error }}</p>{% end %}
<h2>Sessions</h2>
{% if not sessions %}<p>None yet.</p>{% end %}
{% for x in sessions %}
<section class="session" id="session-{{ x.id }}">
<h3>{{ x.group }}: {% if x.is_open(now) %}open until {{ iso(x.ends_at) }}{% else %}closed {{ iso(x.closed_at) }} (by {{ x.closed_by }}){% end %}</h3>
<p>Session {{ x.id }}, opened by {{ x.opened_by }} at {{ iso(x.opened_at) }}.
{% for state, n in sorted(x.counts().items()) %}<span class="count">{{ state }}: {{ n }}</span> {% end %}</p>
<table><tr><th>trainee</th><th>server</th><th>note</th></tr>
{% for user, rec in sorted(x.servers.items()) %}<tr><td>{{ user }}</td><td>{{ rec.state }}</td><td>{{ rec.note }}</td></tr>{% end %}
</table>
{% if x.is_open(now) %}
<form method="post" action="{{ prefix }}close">{% raw xsrf_form_html() %}
<input type="hidden" name="id" value="{{ x.id }}"><button type="submit">Close this session</button>
</form>{% end %}
</section>
{% end %}
</body></html>
"""
)

CSS = """body{font-family:sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;color:#222}
small{color:#666;font-weight:normal}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:.2rem .6rem;text-align:left}.error{color:#a00}
.count{background:#eef;padding:0 .4rem;margin-right:.3rem}label{margin-right:1rem}
section.session{border-top:1px solid #ddd;margin-top:1rem}
"""


class Base(HubOAuthenticated, web.RequestHandler):
    @property
    def warmer(self) -> ClassWarmer:
        return self.settings["warmer"]

    @property
    def prefix(self) -> str:
        return self.settings["prefix"]

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")

    def who(self) -> str:
        user = self.current_user
        if user.get("kind") == "service":
            return f"{user['name']} (command line)"
        return user["name"]

    async def render_page(self, error: str = "") -> None:
        w = self.warmer
        try:
            await w.refresh()
        except Exception as exc:  # the page still shows the sessions
            error = error or f"the hub did not answer: {exc}"
        now = _now()
        sessions = list(reversed(w.store.sessions))
        refresh = any(
            s.is_open(now) and r.state in (WAITING, STARTING)
            for s in sessions
            for r in s.servers.values()
        )
        self.write(
            PAGE.generate(
                s=w.s,
                prefix=self.prefix,
                memory=w.memory(),
                sessions=sessions,
                now=now,
                iso=_when,
                error=error,
                refresh=refresh,
                sorted=sorted,
                xsrf_form_html=self.xsrf_form_html,
            )
        )


class PageHandler(Base):
    @web.authenticated
    async def get(self) -> None:
        await self.render_page()


class FormOpenHandler(Base):
    @web.authenticated
    async def post(self) -> None:
        try:
            hours = float(self.get_body_argument("hours", "") or self.warmer.s.session_hours)
            await self.warmer.open(self.get_body_argument("group", ""), hours, self.who())
        except (ValueError, FileExistsError) as exc:
            self.set_status(400)
            await self.render_page(str(exc))
            return
        self.redirect(self.prefix, status=303)


class FormCloseHandler(Base):
    @web.authenticated
    async def post(self) -> None:
        try:
            await self.warmer.close(self.get_body_argument("id", ""), self.who())
        except KeyError as exc:
            self.set_status(404)
            await self.render_page(str(exc.args[0]))
            return
        self.redirect(self.prefix, status=303)


class ApiBase(Base):
    def get_login_url(self) -> str:  # an API answers 403, it never redirects to a login page
        raise web.HTTPError(403)

    def prepare(self) -> None:
        if not self.current_user:
            raise web.HTTPError(403, "course staff only")

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}))

    def send(self, data: dict, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, indent=1))


class ApiSessionsHandler(ApiBase):
    async def get(self) -> None:
        w = self.warmer
        await w.refresh()
        self.send(
            {
                "sessions": [s.to_json() for s in w.store.sessions],
                "memory": w.memory(),
                "groups": w.s.groups,
            }
        )

    async def post(self) -> None:
        try:
            body = json_decode(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, 'the body must be JSON, e.g. {"group": "..."}') from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        group = body.get("group") or self.warmer.s.groups[0]
        users = body.get("users")
        if users is not None and not (
            isinstance(users, list) and all(isinstance(u, str) for u in users)
        ):
            raise web.HTTPError(400, "users must be a list of user names")
        try:
            hours = None if body.get("hours") is None else float(body["hours"])
            session = await self.warmer.open(group, hours, self.who(), users)
        except (ValueError, TypeError) as exc:
            raise web.HTTPError(400, str(exc)) from None
        except FileExistsError as exc:
            raise web.HTTPError(409, str(exc)) from None
        self.send({"session": session.to_json(), "memory": self.warmer.memory()}, 201)


class ApiCloseHandler(ApiBase):
    async def post(self, sid: str) -> None:
        try:
            session = await self.warmer.close(sid, self.who())
        except KeyError as exc:
            raise web.HTTPError(404, str(exc.args[0])) from None
        self.send({"session": session.to_json()})


class CssHandler(web.RequestHandler):
    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")

    def get(self) -> None:
        self.set_header("Content-Type", "text/css")
        self.finish(CSS)


def make_app(settings: Settings, hub: HubAPI, prefix: str) -> web.Application:
    store = SessionStore(settings.layout.class_sessions_file)
    warmer = ClassWarmer(settings, hub, store)
    routes = [
        (prefix, PageHandler),
        (prefix + "open", FormOpenHandler),
        (prefix + "close", FormCloseHandler),
        (prefix + "api/sessions", ApiSessionsHandler),
        (prefix + r"api/sessions/([0-9a-f]+)/close", ApiCloseHandler),
        (prefix + "static/class.css", CssHandler),
        (prefix + "oauth_callback", HubOAuthCallbackHandler),
    ]
    return web.Application(
        routes,
        warmer=warmer,
        prefix=prefix,
        cookie_secret=os.urandom(32),
    )


def die_with_parent() -> None:
    """End with the hub that started this service, however the hub ends (Linux)."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Class sessions: servers started ahead of a class.")
    ap.add_argument("--state", required=True, type=Path)
    ap.add_argument("--course", required=True)
    ap.add_argument("--title", default="")
    ap.add_argument("--group", action="append", required=True, help="a group it may serve")
    ap.add_argument("--session-hours", type=float, default=3)
    ap.add_argument("--reserve-mb", type=int, default=1024)
    ap.add_argument("--server-limit-mb", type=int, default=4096)
    ap.add_argument("--pace", type=int, default=1, help="servers it starts at once")
    ap.add_argument("--keepalive-seconds", type=int, default=300)
    a = ap.parse_args(argv)
    die_with_parent()
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="[medai-class %(levelname)s] %(message)s"
    )
    settings = Settings(
        layout=StateLayout(a.state),
        course=a.course,
        title=a.title or a.course,
        groups=a.group,
        session_hours=a.session_hours,
        reserve_mb=a.reserve_mb,
        server_limit_mb=a.server_limit_mb,
        pace=max(1, a.pace),
        keepalive_seconds=max(5, a.keepalive_seconds),
    )
    hub = HubAPI(os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"])
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/medai-class/")
    app = make_app(settings, hub, prefix)
    bind = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:0"))

    async def serve() -> None:
        app.listen(bind.port, bind.hostname or "127.0.0.1")
        log.info("class sessions for %s at %s", a.course, prefix)
        await app.settings["warmer"].run()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
