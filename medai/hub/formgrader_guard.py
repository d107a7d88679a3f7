"""Jupyter server extension loaded only in the course's formgrader: no submitted code runs there.

nbgrader's formgrader grades with nbgrader's own executor, in the formgrader's process and
sandbox, where the gradebook is writable and hidden data are mounted, and with the student's
code in the same kernel as the tests. This extension takes over the two routes through which
the formgrader executes notebooks:

- ``POST formgrader/api/submission/<lab>/<student>/autograde`` (the *Autograde* button) is
  forwarded to the trusted grading service (:mod:`medai.hub.grading`), with the signed-in
  user's own hub token, so the button grades securely: collect, sandbox, score outside. If the
  service cannot be reached or refuses, the button answers with an error naming the grading page;
  nbgrader's executor never runs.
- ``POST assignments/validate`` (nbgrader's *Validate* in JupyterLab) runs only for the course's
  own ``source/`` notebooks (instructors' code); for any other notebook (a submission, a
  feedback copy) it is refused.

``medai up`` loads it from the formgrader's command line (``--ServerApp.jpserver_extensions``),
which no configuration file in the course folder overrides. Route precedence: tornado consults
its host rules in the order they were added and serves the first rule with a matching route;
this module moves its rule to the front, so it wins over nbgrader's whatever the loading order.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from urllib.parse import quote

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from nbgrader.server_extensions.validate_assignment.handlers import ValidateAssignmentHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Float, Unicode
from traitlets.config import Configurable


class MedaiFormgraderGuard(Configurable):
    grading_api = Unicode(
        "",
        config=True,
        help="URL of the grading service's API as the formgrader reaches it "
        "(http://127.0.0.1:<port>/services/medai-grading/api). Empty: Autograde only refuses.",
    )
    grading_page = Unicode(
        "/services/medai-grading/",
        config=True,
        help="Where instructors open the grading page (named in the formgrader's messages).",
    )
    wait_s = Float(
        900, config=True, help="Seconds Autograde waits for the grading service's result."
    )

    def refusal(self, lab: str, why: str) -> dict:
        return {
            "success": False,
            "error": (
                "Autograde does not run submitted code in the formgrader. "
                f"{why}\nGrade '{lab}' securely on the grading page: {self.grading_page}"
            ),
        }


def _hub_token(handler: JupyterHandler) -> str | None:
    """The signed-in user's own hub token (from the request header or the formgrader's OAuth
    cookie); the grading service checks its scopes itself."""
    hub_auth = getattr(getattr(handler, "identity_provider", None), "hub_auth", None)
    return hub_auth.get_token(handler) if hub_auth is not None else None


def _summary(run: dict, student: str, page: str) -> tuple[bool, str]:
    lines = [
        f"Graded by the secure grading service (run {run['id']}, requested by "
        f"{run.get('requested_by') or '?'}): each submission in its own sandbox.",
    ]
    if run["state"] != "done":
        lines.append(f"The run {run['state']}: {run.get('error') or ''}".rstrip())
        return False, "\n".join(lines + [f"Details: {page}"])
    rows = [r for r in run.get("results", []) if r.get("student") == student]
    for r in rows:
        lines.append(f"{student}: {r['score']:g} / {r['max']:g} ({r['status']})")
        lines += [f"  {m}" for m in r.get("messages", [])]
    if not rows:
        lines.append(f"No result for {student} in this run.")
    lines.append(f"All results: {page}")
    return bool(rows), "\n".join(lines)


class AutogradeHandler(JupyterHandler):
    def initialize(self, guard: MedaiFormgraderGuard) -> None:
        self.guard = guard

    @web.authenticated
    async def post(self, lab: str, student: str) -> None:
        # text, as nbgrader's handler answers: its page calls JSON.parse on the reply
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(json.dumps(await self._forward(lab, student)))

    async def _forward(self, lab: str, student: str) -> dict:
        g = self.guard
        token = _hub_token(self)
        if not g.grading_api or not token:
            return g.refusal(lab, "The grading service is not configured for this formgrader.")
        client = AsyncHTTPClient()
        headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
        base = g.grading_api.rstrip("/")
        deadline = time.monotonic() + g.wait_s

        async def finished(run: dict) -> dict:
            while run["active"] and time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                resp = await client.fetch(
                    f"{base}/runs/{quote(run['id'], safe='')}", headers=headers, request_timeout=60
                )
                run = json.loads(resp.body)["run"]
            return run

        try:
            for _ in range(2):  # a run of the lab already going: let it end, then ask again
                resp = await client.fetch(
                    f"{base}/labs/{quote(lab, safe='')}/grade",
                    method="POST",
                    headers=headers,
                    body=json.dumps({"student": student, "force": True}),
                    request_timeout=60,
                )
                reply = json.loads(resp.body)
                run = await finished(reply["run"])
                if reply["started"] or run["active"]:
                    break
        except HTTPClientError as exc:
            why = ""
            if exc.response is not None:
                try:
                    why = json.loads(exc.response.body).get("error", "")
                except (ValueError, AttributeError):
                    why = ""
            if exc.code == 403:
                why = (
                    "The grading service refused your sign-in (sign out of the hub and in "
                    f"again, or ask for the instructor/TA role). {why}"
                )
            return g.refusal(lab, f"The grading service answered {exc.code}. {why}".strip())
        except (OSError, ValueError, KeyError) as exc:
            return g.refusal(lab, f"The grading service cannot be reached ({exc}).")
        if run["active"]:
            return g.refusal(lab, f"Grading is still running after {g.wait_s:.0f} s.")
        ok, text = _summary(run, student, g.grading_page)
        return {"success": True, "log": text} if ok else {"success": False, "error": text}


class ValidateHandler(ValidateAssignmentHandler):
    """nbgrader's Validate, for the course's source notebooks only."""

    def initialize(self, guard: MedaiFormgraderGuard) -> None:
        self.guard = guard

    def validate_notebook(self, path: str) -> dict:
        root = Path(self.root_dir).resolve()
        if not (root / str(path)).resolve().is_relative_to(root / "source"):
            return {
                "success": False,
                "value": (
                    "Validate runs a notebook's code, so the formgrader validates only the "
                    f"course's source notebooks (source/...), not '{path}'. Submissions are run "
                    f"only by the secure grader: {self.guard.grading_page}"
                ),
            }
        return super().validate_notebook(path)


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "medai.hub.formgrader_guard"}]


def _load_jupyter_server_extension(serverapp) -> None:
    guard = MedaiFormgraderGuard(parent=serverapp)
    webapp = serverapp.web_app
    base = webapp.settings["base_url"]
    handlers = [
        (
            url_path_join(base, r"/formgrader/api/submission/([^/]+)/([^/]+)/autograde"),
            AutogradeHandler,
            {"guard": guard},
        ),
        (url_path_join(base, r"/assignments/validate"), ValidateHandler, {"guard": guard}),
    ]
    webapp.add_handlers(".*$", handlers)
    rules = webapp.default_router.rules
    rules.insert(0, rules.pop(-2))  # add_handlers put ours just before the catch-all rule
    serverapp.log.info(
        "medai formgrader guard: Autograde -> %s; Validate only for source/",
        guard.grading_api or "(refused: no grading service)",
    )
