"""The trusted grading service ``medai-grading``: instructors and TAs grade from the browser.

A JupyterHub-managed service that runs on the host, outside every sandbox, like the exchange
keeper. It is a thin web layer over :class:`medai.autograder.runs.GradingRuns`, which runs the
same pipeline as ``medai grade`` (nbgrader's collect from the trusted inbound, then every
submission in its own bubblewrap sandbox, in parallel, scored outside).

Who may use it: JupyterHub decides. Users sign in with the hub's OAuth
(:class:`~jupyterhub.services.auth.HubOAuth`); a request is served only if its token holds
``access:services!service=medai-grading``, which :mod:`medai.hub.roles` grants to the course's
instructors and TAs only. Everyone else gets 403 (from the hub's OAuth step for a browser, from
here for an API token).

Routes, below ``$JUPYTERHUB_SERVICE_PREFIX`` (so they move with the service's URL):

- ``GET  ./``                      the grading page (HTML; its script and style are static files)
- ``GET  ./api/labs``              the course's labs with received/collected/graded counts
- ``POST ./api/labs/<lab>/grade``  start a run: JSON ``{"student": null|id, "force": bool}``
- ``GET  ./api/labs/<lab>/results`` stored results of the lab's collected submissions
- ``GET  ./api/runs/<id>``         a run's progress, and its result table when done

Requests authenticated by the browser's cookie must carry the page's XSRF token on POST
(``X-XSRFToken`` header): HubOAuth accepts cookie authentication of a POST only with a valid
token, so a forged cross-site request is refused with 403. Requests with an
``Authorization: token ...`` header (the formgrader forwarding Autograde, scripts) need none.
Every response carries a strict content security policy: no inline script, nothing from
elsewhere.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import secrets
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
from tornado import escape, ioloop, web

from medai.autograder import GradingError
from medai.autograder.runs import GradingRuns
from medai.hub.layout import StateLayout
from medai.paths import package_file

UI_DIR = package_file("hub", "grading_ui")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _security_headers(handler: web.RequestHandler) -> None:
    handler.set_header("Content-Security-Policy", CSP)
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Referrer-Policy", "no-referrer")
    handler.set_header("Cache-Control", "no-store")


class _Base(HubOAuthenticated, web.RequestHandler):
    denied: dict | None = None

    @property
    def hub_scopes(self) -> set[str]:
        # Explicit rather than from $JUPYTERHUB_OAUTH_ACCESS_SCOPES: without it, HubAuthenticated
        # would let every hub user in.
        return {f"access:services!service={self.settings['medai_service']}"}

    def set_default_headers(self) -> None:
        _security_headers(self)

    async def prepare(self) -> None:
        # Identify the user without blocking the event loop (HubAuthenticated's own
        # get_current_user is synchronous); same checks: the token's scopes against ours.
        model = await self.hub_auth.get_user(self, sync=False)
        user = None
        if model:
            try:
                user = self.check_hub_user(model)
            except UserNotAllowed:
                self.denied = model
        self._hub_auth_user_cache = user
        self.current_user = user

    @property
    def runs(self) -> GradingRuns:
        return self.settings["medai_runs"]

    @property
    def user_name(self) -> str:
        return self.current_user["name"]


class PageHandler(_Base):
    async def get(self) -> None:
        if self.current_user is None:
            if self.denied:
                raise web.HTTPError(403, f"{self.denied['name']} is not course staff")
            self.redirect(self.get_login_url())
            return
        self.render(
            "index.html",
            prefix=self.settings["medai_prefix"],
            xsrf=self.xsrf_token.decode("ascii", "replace"),
            user=self.user_name,
            course_id=self.runs.course_id,
            course_title=self.settings["medai_course_title"],
        )

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        why = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            "<!doctype html><meta charset=utf-8><title>Grading</title>"
            f"<h1>{status_code}: {escape.xhtml_escape(self._reason)}</h1>"
            f"<p>{escape.xhtml_escape(why)}</p>"
            + (
                "<p>Only the course's instructors and TAs may grade.</p>"
                if status_code == 403
                else ""
            )
        )


class ApiHandler(_Base):
    async def prepare(self) -> None:
        await super().prepare()
        if self.current_user is None:
            who = (
                f"signed in as {self.denied['kind']} {self.denied['name']}"
                if self.denied
                else "not signed in (a browser's request counts only with the page's XSRF token)"
            )
            raise web.HTTPError(
                403,
                f"{who}: only the course's instructors and TAs may grade. Use the grading page, "
                "or send a hub token with access:services!service=medai-grading",
            )

    def get_login_url(self) -> str:  # an API answers 403, never a redirect to a login page
        raise web.HTTPError(403, "not signed in")

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish({"error": message, "status": status_code})

    def send(self, data: dict, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))

    def known_lab(self, lab: str) -> str:
        try:
            return self.runs.check_lab(lab)
        except GradingError as exc:
            raise web.HTTPError(404, str(exc)) from None


class LabsHandler(ApiHandler):
    def get(self) -> None:
        try:
            labs = self.runs.overview()
        except GradingError as exc:
            raise web.HTTPError(500, str(exc)) from None
        self.send({"course": self.runs.course_id, "user": self.user_name, "labs": labs})


class GradeHandler(ApiHandler):
    def post(self, lab: str) -> None:
        self.known_lab(lab)
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, 'send a JSON object: {"student": null, "force": false}')
        student, force = body.get("student"), body.get("force", False)
        if student is not None and not isinstance(student, str):
            raise web.HTTPError(400, '"student" must be a student id (a string) or null')
        if not isinstance(force, bool):
            raise web.HTTPError(400, '"force" must be true or false')
        try:
            run, started = self.runs.start(
                lab, student=student or None, force=force, user=self.user_name
            )
        except GradingError as exc:
            raise web.HTTPError(400, str(exc)) from None
        self.send({"run": self.runs.describe(run), "started": started}, 202 if started else 200)


class ResultsHandler(ApiHandler):
    def get(self, lab: str) -> None:
        self.known_lab(lab)
        self.send({"lab": lab, "results": self.runs.results(lab)})


class RunHandler(ApiHandler):
    def get(self, run_id: str) -> None:
        run = self.runs.get(run_id)
        if run is None:
            raise web.HTTPError(404, f"no grading run '{run_id}' (runs are kept until a restart)")
        self.send({"run": self.runs.describe(run)})


class StaticHandler(web.StaticFileHandler):
    def set_default_headers(self) -> None:
        _security_headers(self)
        self.clear_header("Cache-Control")


def make_app(
    runs: GradingRuns, prefix: str, course_title: str, service: str = "medai-grading"
) -> web.Application:
    """The tornado application of the service, its routes below ``prefix``."""
    if not prefix.endswith("/"):
        prefix += "/"
    return web.Application(
        [
            (prefix, PageHandler),
            (prefix + "oauth_callback", HubOAuthCallbackHandler),
            (prefix + "api/labs", LabsHandler),
            (prefix + r"api/labs/([^/]+)/grade", GradeHandler),
            (prefix + r"api/labs/([^/]+)/results", ResultsHandler),
            (prefix + r"api/runs/([^/]+)", RunHandler),
            (prefix + r"static/(grading\.(?:js|css))", StaticHandler, {"path": str(UI_DIR)}),
        ],
        template_path=str(UI_DIR),
        cookie_secret=secrets.token_bytes(32),  # signs the OAuth cookie; new on each start
        medai_runs=runs,
        medai_service=service,
        medai_prefix=prefix,
        medai_course_title=course_title,
    )


def _backend_factory(kind: str, bwrap: str | None):
    if kind == "kubernetes":
        from medai.k8s.grading import KubernetesBackend

        return KubernetesBackend.from_env
    from medai.autograder.sandbox import BubblewrapBackend

    return lambda: BubblewrapBackend(bwrap)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="The medai-grading service (run by JupyterHub).")
    ap.add_argument("--state", required=True, type=Path, help="the hub's state folder")
    ap.add_argument("--course", required=True, help="course id")
    ap.add_argument("--title", default="", help="course title shown on the page")
    ap.add_argument("--labs", required=True, help='JSON list: [{"id": ..., "title": ...}]')
    ap.add_argument("--workers", type=int, default=0, help="submissions in parallel (0: CPUs)")
    ap.add_argument("--policy", type=Path, default=None, help="grading policy YAML")
    ap.add_argument("--bwrap", default=None, help="bubblewrap executable")
    ap.add_argument(
        "--backend",
        choices=("bubblewrap", "kubernetes"),
        default="bubblewrap",
        help="where submissions run: bubblewrap here, or a Job each (medai.k8s.grading)",
    )
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[medai-grading] %(message)s")
    needed = ("JUPYTERHUB_SERVICE_NAME", "JUPYTERHUB_SERVICE_URL", "JUPYTERHUB_SERVICE_PREFIX")
    missing = [v for v in needed if not os.environ.get(v)]
    if missing:
        print(
            f"error: {', '.join(missing)} not set: this service is started by JupyterHub "
            "(see medai/hub/hubconfig.py), not by hand",
            file=sys.stderr,
        )
        return 2
    layout = StateLayout(a.state.resolve())
    labs = {lab["id"]: lab.get("title", lab["id"]) for lab in json.loads(a.labs)}
    runs = GradingRuns(
        layout.course_dir(a.course),
        a.course,
        layout.root / "exchange",
        labs,
        data_root=layout.data,
        policy_file=a.policy,
        workers=a.workers or None,
        backend=_backend_factory(a.backend, a.bwrap),
    )
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    app = make_app(runs, prefix, a.title or a.course, os.environ["JUPYTERHUB_SERVICE_NAME"])
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    app.listen(url.port, url.hostname)
    # the grading pipeline's imports take seconds: load them now, with the service already up
    threading.Thread(target=importlib.import_module, args=("medai.autograder.batch",)).start()
    logging.getLogger("medai.grading").info(
        "serving %s on %s for course %s", prefix, url.netloc, a.course
    )
    try:
        ioloop.IOLoop.current().start()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
