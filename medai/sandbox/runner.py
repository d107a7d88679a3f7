"""Runs inside the data-job sandbox: the trainee's function on the private data (untrusted).

``python -I -m medai.sandbox.runner /job``: reads ``/job/job.json`` (code, function name),
loads ``/private/data.parquet`` (read-only), calls the function and writes one JSON record to
the result pipe (``MEDAI_RESULT_FD``): the request's fields and the used rows' columns. An
exception is reported by its type's name only. Nothing here is trusted: the parent bounds and
checks everything it reads (:mod:`medai.sandbox.jobs`), and the trainee's code can write
anything to the pipe.
"""

from __future__ import annotations

import json
import os
import sys


class NotAnOutput(Exception):
    """The function returned something other than a :mod:`medai.sandbox.outputs` request."""


def _emit(fd: int, record: dict) -> None:
    os.write(fd, (json.dumps(record, allow_nan=False, default=str) + "\n").encode())


def _columns(req: dict) -> list[str]:
    from medai.sandbox.outputs import ROW

    cols = [ROW]
    for key in ("by", "x"):
        cols += list(req.get(key) or [])
    for key in ("value", "y", "column"):
        if isinstance(req.get(key), str):
            cols.append(req[key])
    return list(dict.fromkeys(cols))


def main(job: str) -> int:
    fd = int(os.environ["MEDAI_RESULT_FD"])
    spec = json.loads(open(os.path.join(job, "job.json"), encoding="utf-8").read())
    # stdout and stderr go nowhere the trainee sees (the parent discards them); close them here
    # too, so a print() of a patient's values is not even buffered in the parent
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        import pandas as pd

        from medai.sandbox.outputs import ROW

        df = pd.read_parquet("/private/data.parquet")
        df.insert(0, ROW, range(len(df)))
        namespace: dict = {"__name__": "analysis"}
        exec(compile(spec["code"], "<analysis>", "exec"), namespace)
        req = namespace[spec["function"]](df)
        if not isinstance(req, dict) or "kind" not in req or "frame" not in req:
            raise NotAnOutput
        frame = req.pop("frame")
        cols = [c for c in _columns(req) if c in frame.columns]
        sub = frame[cols]
        data = {c: sub[c].tolist() for c in cols}
        _emit(fd, {"type": "result", "request": req, "columns": data})
    except BaseException as exc:  # noqa: BLE001 - report the kind, never the message
        _emit(fd, {"type": "error", "exc": type(exc).__name__})
    _emit(fd, {"type": "done"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
