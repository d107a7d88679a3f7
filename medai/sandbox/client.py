"""The notebook client of the data sandbox (for a trainee's JupyterLab).

>>> from medai.sandbox import client, outputs as out
>>> sb = client.connect()                       # finds the service from the server's env
>>> sb.datasets()                               # what is sandboxed, your access, your budget
>>> df = sb.mock("cohort")                      # the mock twin: develop against it
>>> sb.request_access("cohort", "Stroke risk by region for my module 1 essay")
>>> def analysis(df):
...     return out.table(df, by=["region"], value="sbp", stat="mean")
>>> sb.submit(analysis, "cohort")               # released / held / refused, with the rule

It talks to ``medai-sandbox`` with the server's own hub token (``JUPYTERHUB_API_TOKEN``); the
service's URL follows from ``JUPYTERHUB_SERVICE_URL``-style variables or ``MEDAI_SANDBOX_URL``.
"""

from __future__ import annotations

import inspect
import json
import os
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SERVICE = "medai-sandbox"


@dataclass
class Result:
    """What a submission came back with."""

    status: str  # released | held | refused | running
    rule: str | None = None
    message: str | None = None
    output: dict | None = None
    job: str | None = None
    raw: dict = field(default_factory=dict, repr=False)

    def table(self):
        """A released table as a pandas DataFrame (one row per cell)."""
        import pandas as pd

        if not self.output or self.output.get("kind") != "table":
            raise ValueError(f"no released table here (status {self.status})")
        by = self.output["by"]
        rows = [
            dict(zip(by, c["group"], strict=False)) | {"value": c["value"]}
            for c in self.output["cells"]
        ]
        return pd.DataFrame(rows)


class SandboxClientError(RuntimeError):
    pass


def service_url() -> str:
    if os.environ.get("MEDAI_SANDBOX_URL"):
        return os.environ["MEDAI_SANDBOX_URL"].rstrip("/")
    hub = os.environ.get("JUPYTERHUB_API_URL", "")
    if not hub:
        raise SandboxClientError(
            "cannot find the sandbox service: run this in your JupyterLab on the hub, or set "
            "MEDAI_SANDBOX_URL to its address (http://HOST/services/medai-sandbox)"
        )
    base = hub.rsplit("/hub/api", 1)[0]
    return f"{base}/services/{SERVICE}"


class SandboxClient:
    def __init__(
        self, url: str | None = None, token: str | None = None, opener=None, timeout: float = 30
    ) -> None:
        self.url = (url or service_url()).rstrip("/")
        self.token = token or os.environ.get("JUPYTERHUB_API_TOKEN", "")
        self.opener = opener or urllib.request.build_opener()
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict | None = None) -> dict | list:
        req = urllib.request.Request(
            f"{self.url}/api/{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with self.opener.open(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                msg = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                msg = exc.reason
            raise SandboxClientError(f"{exc.code}: {msg}") from None

    def datasets(self) -> list[dict]:
        return self._call("GET", "datasets")

    def mock(self, name: str):
        """The mock twin of ``name`` as a DataFrame (from the public data folder)."""
        import pandas as pd

        root = Path(os.environ.get("MEDAI_DATA", "/data"))
        path = root / "sandbox-mock" / name / "mock.csv"
        if not path.is_file():
            raise SandboxClientError(f"no mock twin at {path}; is '{name}' a sandboxed dataset?")
        df = pd.read_csv(path)
        df.insert(0, "_row", range(len(df)))
        return df

    def request_access(self, name: str, purpose: str) -> dict:
        return self._call("POST", f"datasets/{name}/access", {"purpose": purpose})

    def submit(self, fn, dataset: str, *, wait: float = 120, code: str | None = None) -> Result:
        """Run ``fn`` (a function defined in a cell, or a name with ``code``) on ``dataset``."""
        if code is None:
            try:
                code = textwrap.dedent(inspect.getsource(fn))
            except (OSError, TypeError):
                raise SandboxClientError("pass a function defined in a notebook cell") from None
            name = fn.__name__
            code = "from medai.sandbox import outputs as out\n" + code
        else:
            name = fn
        job = self._call("POST", "jobs", {"dataset": dataset, "code": code, "function": name})
        return self.result(job["job"], wait=wait)

    def result(self, job: str, *, wait: float = 120) -> Result:
        deadline = time.monotonic() + wait
        while True:
            r = self._call("GET", f"jobs/{job}")
            if r["status"] != "running" or time.monotonic() > deadline:
                return Result(r["status"], r.get("rule"), r.get("message"), r.get("output"), job, r)
            time.sleep(0.1)


def connect(url: str | None = None, token: str | None = None) -> SandboxClient:
    return SandboxClient(url, token)
