"""The data-sandbox service ``medai-sandbox``: a JupyterHub-managed service on its own origin.

It runs on the host, outside every sandbox (it reads the data secret and the private data; no
trainee's server mounts either). Who may do what is JupyterHub's RBAC
(:mod:`medai.hub.roles`): every request needs ``access:services!service=medai-sandbox``, and

- ``custom:medai-sandbox:submit`` (trainees and staff): list datasets, request access, submit
  jobs, read one's own jobs;
- ``custom:medai-sandbox:review`` (the data owners): the review queue, access requests, the
  audit log, the review page; a reviewer acts only on the datasets they own;
- ``custom:medai-sandbox:usage`` (instructors): per-trainee usage and budgets, budget resets.

API (JSON, below ``$JUPYTERHUB_SERVICE_PREFIX``): ``GET api/datasets``,
``POST api/datasets/<name>/access`` ``{"purpose"}``, ``POST api/jobs``
``{"dataset", "code", "function"}``, ``GET api/jobs/<id>``, ``GET api/review``,
``POST api/review/<id>`` ``{"decision": "approve"|"refuse"}``, ``GET api/access``,
``POST api/access/<user>/<dataset>`` ``{"decision": "grant"|"refuse"}``, ``GET api/audit``,
``GET api/usage``, ``POST api/usage/<user>/<dataset>/reset``. ``GET ./`` is the owner's
review page (server-rendered, every value escaped, no script; its forms carry the XSRF token).

A job's result is visible only at a whole multiple of ``timing_quantum_s`` after submission, and
what the trainee reads never includes an exception message, printed output or timing.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from medai.config import CourseConfig, SandboxDataset, load_config, parse_config
from medai.sandbox import registry
from medai.sandbox.audit import AuditLog
from medai.sandbox.disclosure import Checker, Decision
from medai.sandbox.jobs import run_job
from medai.sandbox.store import Store

SERVICE = "medai-sandbox"
SUBMIT = f"custom:{SERVICE}:submit"
REVIEW = f"custom:{SERVICE}:review"
USAGE = f"custom:{SERVICE}:usage"
MAX_CODE = 64 * 1024
log = logging.getLogger("medai.sandbox")


class SandboxError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Sandbox:
    """The service's logic, without the web layer (tests and the benchmark use it directly)."""

    def __init__(
        self, cfg: CourseConfig, state: Path, *, workers: int = 2, bwrap: str | None = None
    ) -> None:
        from medai.synthetic.secret import ensure_secret

        self.cfg = cfg
        self.layout = registry.SandboxLayout(Path(state).resolve())
        secret, _ = ensure_secret(self.layout.secret)
        self.datasets: dict[str, SandboxDataset] = {d.name: d for d in cfg.sandbox.datasets}
        self.checkers: dict[str, Checker] = {}
        for d in self.datasets.values():
            registry.prepare(self.layout, d, secret)
            private = pd.read_parquet(self.layout.private_file(d.name))
            self.checkers[d.name] = Checker(private, d.policy)
        self.store = Store(self.layout.store)
        self.audit = AuditLog(self.layout.audit_log)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="datajob")
        self.bwrap = bwrap
        self.quantum = cfg.sandbox.timing_quantum_s
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_lock = threading.Lock()
        # the checkers' libraries take seconds to import: load them now, not on the first job
        threading.Thread(target=_warm_up, daemon=True).start()

    def _dataset(self, name: str) -> SandboxDataset:
        if name not in self.datasets:
            raise SandboxError(
                404, f"no sandboxed dataset '{name}' (have: {', '.join(self.datasets) or 'none'})"
            )
        return self.datasets[name]

    def owned(self, user: str) -> list[str]:
        return [n for n, d in self.datasets.items() if d.owner == user]

    # ---- trainee ----------------------------------------------------------------------------

    def list_datasets(self, user: str) -> list[dict]:
        out = []
        for d in registry.sandboxed_datasets(self.cfg):
            acc = self.store.access(user, d.name)
            out.append(
                {
                    "name": d.name,
                    "title": d.title,
                    "owner": d.owner,
                    "schema": d.schema,
                    "mock_path": d.mock_path,
                    "policy": d.policy_summary,
                    "access": acc["status"] if acc else "none",
                    "epsilon_left": self._budget_left(user, d.name),
                }
            )
        return out

    def _budget_left(self, user: str, name: str) -> float:
        total = self.datasets[name].policy.epsilon_budget
        return round(max(0.0, total - self.store.spent(user, name)), 6)

    def request_access(self, user: str, name: str, purpose: object) -> dict:
        self._dataset(name)
        if not isinstance(purpose, str) or not 10 <= len(purpose.strip()) <= 2000:
            raise SandboxError(400, "state the purpose of your analysis (10 to 2000 characters)")
        status = self.store.request_access(user, name, purpose.strip())
        self.audit.append("access-request", user=user, dataset=name, purpose=purpose.strip())
        return {"dataset": name, "access": status}

    def decide_access(self, owner: str, user: str, name: str, decision: object) -> dict:
        self._owner_of(owner, name)
        if decision not in ("grant", "refuse"):
            raise SandboxError(400, 'decision must be "grant" or "refuse"')
        if not self.store.decide_access(user, name, decision == "grant", owner):
            raise SandboxError(404, f"{user} has not asked for access to {name}")
        self.audit.append(
            "access-decision", owner=owner, user=user, dataset=name, decision=decision
        )
        return {"user": user, "dataset": name, "access": self.store.access(user, name)["status"]}

    def submit(self, user: str, name: str, code: object, function: object) -> dict:
        d = self._dataset(name)
        acc = self.store.access(user, name)
        if not acc or acc["status"] != "granted":
            raise SandboxError(
                403,
                f"no access to {name} yet: request it with a purpose and wait for "
                f"{d.owner} to grant it",
            )
        if not isinstance(code, str) or not 0 < len(code.encode()) <= MAX_CODE:
            raise SandboxError(400, f"code must be text of at most {MAX_CODE} bytes")
        if not isinstance(function, str) or not function.isidentifier():
            raise SandboxError(400, "function must be the name of a function in the code")
        if self.store.recent_jobs(user, name, time.time() - 3600) >= d.policy.max_jobs_per_hour:
            self.audit.append("rate-limited", user=user, dataset=name)
            raise SandboxError(429, f"at most {d.policy.max_jobs_per_hour} jobs an hour on {name}")
        job = self.store.new_job(user, name, code, function)
        self.audit.append("submit", job=job, user=user, dataset=name, function=function, code=code)
        self.pool.submit(self._run, job, user, name, code, function)
        return {"job": job, "status": "running"}

    def _lock(self, user: str, name: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault((user, name), threading.Lock())

    def _run(self, job: str, user: str, name: str, code: str, function: str) -> None:
        d = self.datasets[name]
        start = self.store.job(job)["submitted"]
        try:
            outcome = run_job(
                self.layout.jobs,
                self.layout.private_dir(name),
                code,
                function,
                self.checkers[name].n,
                wall_s=d.policy.job_seconds,
                bwrap_exe=self.bwrap,
            )
            if outcome.status == "ok":
                # one decision at a time per trainee and dataset: budget and history are shared
                with self._lock(user, name):
                    dec = self.checkers[name].check(
                        outcome.record,
                        code,
                        self.store.subsets(user, name, self.checkers[name].n),
                        self._budget_left(user, name),
                    )
                    if dec.status == "released":
                        self.store.add_subsets(user, name, dec.subsets)
                        if dec.epsilon:
                            self.store.spend(user, name, dec.epsilon)
            elif outcome.error == "NotAnOutput":
                dec = Decision(
                    "refused",
                    "not-an-output",
                    "the function must return an output of medai.sandbox.outputs "
                    "(out.table, out.regression, out.dp_count, out.dp_mean, out.model)",
                )
            elif outcome.status == "error":
                dec = Decision(
                    "refused",
                    "error",
                    f"the analysis raised {outcome.error} "
                    "(messages and printed output are never returned)",
                )
            else:
                dec = Decision(
                    "refused",
                    outcome.status,
                    {
                        "timeout": "the job ran past its time limit",
                        "output-limit": "the job returned more than the size limit",
                        "malformed": "the job returned something that is not an output request",
                        "crashed": "the job ended without returning an output",
                    }.get(outcome.status, "the job failed"),
                )
        except Exception:  # noqa: BLE001 - never leave a job running; never say why to the trainee
            log.exception("job %s failed in the service", job)
            dec = Decision("refused", "service-error", "the service could not check this job")
        elapsed = time.time() - start
        q = self.quantum
        visible = start + (math.ceil(elapsed / q) * q if q else elapsed)
        output = dec.output
        self.store.finish_job(
            job,
            dec.status,
            dec.rule,
            dec.message,
            output,
            {**dec.detail, "epsilon": dec.epsilon},
            visible,
            dec.epsilon,
        )
        self.audit.append(
            "decision",
            job=job,
            user=user,
            dataset=name,
            status=dec.status,
            rule=dec.rule,
            released=output if dec.status == "released" else None,
        )

    def job_view(self, user: str, job: str, *, owner: bool = False) -> dict:
        j = self.store.job(job)
        if j is None or (j["user"] != user and not owner):
            raise SandboxError(404, f"no job '{job}' of yours")
        if j["status"] == "running" or (j["visible_at"] or 0) > time.time():
            return {"job": job, "dataset": j["dataset"], "status": "running"}
        view = {
            "job": job,
            "dataset": j["dataset"],
            "status": j["status"],
            "rule": j["rule"],
            "message": j["message"],
        }
        if j["status"] == "released":
            view["output"] = j["output"]
        return view

    # ---- data owner -------------------------------------------------------------------------

    def _owner_of(self, owner: str, name: str) -> None:
        d = self._dataset(name)
        if d.owner != owner:
            raise SandboxError(403, f"{owner} is not the data owner of {name}")

    def review_queue(self, owner: str) -> list[dict]:
        return [
            {
                k: j[k]
                for k in (
                    "id",
                    "user",
                    "dataset",
                    "code",
                    "function",
                    "rule",
                    "message",
                    "output",
                    "detail",
                    "submitted",
                )
            }
            for j in self.store.jobs("held", self.owned(owner))
        ]

    def review(self, owner: str, job: str, decision: object) -> dict:
        j = self.store.job(job)
        if j is None or j["status"] != "held":
            raise SandboxError(404, f"no held job '{job}'")
        self._owner_of(owner, j["dataset"])
        if decision not in ("approve", "refuse"):
            raise SandboxError(400, 'decision must be "approve" or "refuse"')
        if decision == "approve" and j["output"] is not None:
            status, rule, msg = "released", "approved", f"approved by {owner}"
        else:
            status, rule = "refused", "refused-by-owner" if decision == "refuse" else "approved"
            msg = f"refused by {owner}" if decision == "refuse" else "approved, nothing to release"
        self.store.finish_job(job, status, rule, msg, j["output"], j["detail"], time.time())
        self.audit.append(
            "review",
            job=job,
            owner=owner,
            decision=decision,
            released=j["output"] if status == "released" else None,
        )
        return self.job_view(owner, job, owner=True)

    def access_requests(self, owner: str) -> list[dict]:
        return self.store.access_requests(self.owned(owner))

    def audit_entries(self, owner: str) -> list[dict]:
        mine = set(self.owned(owner))
        return [
            e
            for e in self.audit.entries()
            if e.get("dataset") in mine
            or "job" in e
            and (self.store.job(e["job"]) or {}).get("dataset") in mine
        ]

    # ---- instructor -------------------------------------------------------------------------

    def usage(self) -> list[dict]:
        out = self.store.usage()
        for u in out:
            u["epsilon_left"] = self._budget_left(u["user"], u["dataset"])
        return out

    def reset_budget(self, by: str, user: str, name: str) -> dict:
        self._dataset(name)
        self.store.reset_budget(user, name)
        self.audit.append("budget-reset", by=by, user=user, dataset=name)
        return {"user": user, "dataset": name, "epsilon_left": self._budget_left(user, name)}


def _warm_up() -> None:
    import importlib

    for mod in ("acro", "opendp.prelude", "sacroml.attacks.worst_case_attack"):
        try:
            importlib.import_module(mod)
        except ImportError:
            pass


# ---------------------------------------------------------------------------------------------
# the web layer

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def make_app(sandbox: Sandbox, prefix: str, service: str = SERVICE):
    from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
    from tornado import escape, web

    if not prefix.endswith("/"):
        prefix += "/"

    class Base(HubOAuthenticated, web.RequestHandler):
        @property
        def hub_scopes(self) -> set[str]:
            return {f"access:services!service={service}"}

        def set_default_headers(self) -> None:
            self.set_header("Content-Security-Policy", CSP)
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Referrer-Policy", "no-referrer")
            self.set_header("Cache-Control", "no-store")

        async def prepare(self) -> None:
            model = await self.hub_auth.get_user(self, sync=False)
            user = None
            if model:
                try:
                    user = self.check_hub_user(model)
                except web.HTTPError:
                    user = None
                except Exception:  # noqa: BLE001 - UserNotAllowed
                    user = None
            self._hub_auth_user_cache = user
            self.current_user = user

        def need(self, scope: str) -> str:
            if self.current_user is None:
                raise web.HTTPError(403, f"send a hub token with access to {service}")
            if scope not in set(self.current_user.get("scopes", [])):
                raise web.HTTPError(403, f"this needs the scope {scope}")
            return self.current_user["name"]

        def get_login_url(self) -> str:
            if self.request.path.startswith(prefix + "api/"):
                raise web.HTTPError(403, "not signed in")
            return super().get_login_url()

        def body(self) -> dict:
            try:
                data = json.loads(self.request.body or b"{}")
            except ValueError:
                raise web.HTTPError(400, "the request body is not JSON") from None
            if not isinstance(data, dict):
                raise web.HTTPError(400, "send a JSON object")
            return data

        def send(self, data, status: int = 200) -> None:
            self.set_status(status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(data, default=str))

        def write_error(self, status_code: int, **kwargs) -> None:
            exc = kwargs.get("exc_info", (None, None, None))[1]
            msg = getattr(exc, "log_message", None) or self._reason
            self.set_header("Content-Type", "application/json")
            self.finish({"error": msg, "status": status_code})

        def call(self, fn, *args, status: int = 200):
            try:
                self.send(fn(*args), status)
            except SandboxError as exc:
                raise web.HTTPError(exc.status, str(exc)) from None

    class Datasets(Base):
        def get(self):
            self.call(sandbox.list_datasets, self.need(SUBMIT))

    class Access(Base):
        def post(self, name):
            user = self.need(SUBMIT)
            self.call(sandbox.request_access, user, name, self.body().get("purpose"))

    class Jobs(Base):
        def post(self):
            user, b = self.need(SUBMIT), self.body()
            self.call(
                sandbox.submit, user, b.get("dataset"), b.get("code"), b.get("function"), status=202
            )

    class Job(Base):
        def get(self, job):
            self.call(sandbox.job_view, self.need(SUBMIT), job)

    class Review(Base):
        def get(self):
            self.call(sandbox.review_queue, self.need(REVIEW))

        def post(self, job=None):
            self.call(sandbox.review, self.need(REVIEW), job, self.body().get("decision"))

    class AccessRequests(Base):
        def get(self):
            self.call(sandbox.access_requests, self.need(REVIEW))

        def post(self, user=None, name=None):
            self.call(
                sandbox.decide_access, self.need(REVIEW), user, name, self.body().get("decision")
            )

    class Audit(Base):
        def get(self):
            self.call(sandbox.audit_entries, self.need(REVIEW))

    class Usage(Base):
        def get(self):
            self.call(sandbox.usage, self.need(USAGE))

        def post(self, user=None, name=None):
            self.call(sandbox.reset_budget, self.need(USAGE), user, name)

    class Page(Base):
        @web.authenticated
        def get(self):
            owner = self.need(REVIEW)
            self._page(owner)

        @web.authenticated
        def post(self):
            owner = self.need(REVIEW)
            kind = self.get_body_argument("kind", "")
            try:
                if kind == "job":
                    sandbox.review(
                        owner,
                        self.get_body_argument("id", ""),
                        self.get_body_argument("decision", ""),
                    )
                elif kind == "access":
                    sandbox.decide_access(
                        owner,
                        self.get_body_argument("user", ""),
                        self.get_body_argument("dataset", ""),
                        self.get_body_argument("decision", ""),
                    )
            except SandboxError as exc:
                raise web.HTTPError(exc.status, str(exc)) from None
            self.redirect(prefix)

        def _page(self, owner: str) -> None:
            e = escape.xhtml_escape
            xsrf = e(self.xsrf_token.decode("ascii", "replace"))
            parts = [
                "<!doctype html><html lang=en><meta charset=utf-8>",
                "<title>Data sandbox: review</title>",
                f"<h1>Data sandbox: review ({e(owner)})</h1><h2>Held outputs</h2>",
            ]
            for j in sandbox.review_queue(owner):
                parts += [
                    f"<section><h3>{e(j['id'])}: {e(j['user'])} on {e(j['dataset'])}</h3>",
                    f"<p>Rule: {e(j['rule'] or '')}: {e(j['message'] or '')}</p>",
                    f"<pre>{e(j['code'])}</pre>",
                    f"<pre>{e(json.dumps(j['output'], indent=1))}</pre>",
                ]
                for dec in ("approve", "refuse"):
                    parts.append(
                        f"<form method=post action='{e(prefix)}'><input type=hidden name=_xsrf "
                        f"value='{xsrf}'><input type=hidden name=kind value=job><input "
                        f"type=hidden name=id value='{e(j['id'])}'><button name=decision "
                        f"value={dec}>{dec.title()}</button></form>"
                    )
                parts.append("</section>")
            parts.append("<h2>Access requests</h2>")
            for a in sandbox.access_requests(owner):
                parts.append(
                    f"<section><p>{e(a['user'])} on {e(a['dataset'])}: {e(a['status'])}</p>"
                    f"<blockquote>{e(a['purpose'])}</blockquote>"
                )
                if a["status"] == "pending":
                    for dec in ("grant", "refuse"):
                        parts.append(
                            f"<form method=post action='{e(prefix)}'><input type=hidden "
                            f"name=_xsrf value='{xsrf}'><input type=hidden name=kind "
                            f"value=access><input type=hidden name=user value='{e(a['user'])}'>"
                            f"<input type=hidden name=dataset value='{e(a['dataset'])}'>"
                            f"<button name=decision value={dec}>{dec.title()}</button></form>"
                        )
                parts.append("</section>")
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish("".join(parts))

        def write_error(self, status_code: int, **kwargs) -> None:
            exc = kwargs.get("exc_info", (None, None, None))[1]
            msg = getattr(exc, "log_message", None) or self._reason
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.finish(
                f"<!doctype html><title>{status_code}</title><h1>{status_code}</h1>"
                f"<p>{escape.xhtml_escape(msg)}</p>"
            )

    return web.Application(
        [
            (prefix, Page),
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
            (prefix + "api/datasets", Datasets),
            (prefix + r"api/datasets/([^/]+)/access", Access),
            (prefix + "api/jobs", Jobs),
            (prefix + r"api/jobs/([0-9a-f]+)", Job),
            (prefix + "api/review", Review),
            (prefix + r"api/review/([0-9a-f]+)", Review),
            (prefix + "api/access", AccessRequests),
            (prefix + r"api/access/([^/]+)/([^/]+)", AccessRequests),
            (prefix + "api/audit", Audit),
            (prefix + "api/usage", Usage),
            (prefix + r"api/usage/([^/]+)/([^/]+)/reset", Usage),
        ],
        cookie_secret=secrets.token_bytes(32),
        xsrf_cookies=False,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The medai-sandbox service (run by JupyterHub).")
    ap.add_argument("--state", required=True, type=Path, help="the hub's state folder")
    ap.add_argument("--config", type=Path, help="the course configuration file")
    ap.add_argument("--course-json", help="the course configuration as JSON (from the hub)")
    ap.add_argument("--bwrap", default=None, help="bubblewrap executable")
    ap.add_argument("--workers", type=int, default=2, help="jobs in parallel")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[medai-sandbox] %(message)s")
    missing = [
        v for v in ("JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_SERVICE_PREFIX") if not os.environ.get(v)
    ]
    if missing:
        print(
            f"error: {', '.join(missing)} not set: JupyterHub starts this service", file=sys.stderr
        )
        return 2
    from tornado import ioloop

    if a.course_json:
        cfg = parse_config(json.loads(a.course_json), "--course-json")
    elif a.config:
        cfg = load_config(a.config)
    else:
        ap.error("give --config or --course-json")
    sandbox = Sandbox(cfg, a.state, workers=a.workers, bwrap=a.bwrap)
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    make_app(sandbox, prefix, os.environ.get("JUPYTERHUB_SERVICE_NAME", SERVICE)).listen(
        url.port, url.hostname
    )
    log.info("serving %s on %s", prefix, url.netloc)
    try:
        ioloop.IOLoop.current().start()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
