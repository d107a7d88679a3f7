"""Executes one submission's notebooks *inside* the sandbox (``python -m medai.autograder.runner``).

Everything here shares a process with untrusted code, so nothing here is trusted: it only turns
the notebook into a stream of JSON lines on the result pipe (``MEDAI_RESULT_FD``), which the
trusted parent reads with a size cap, validates, and scores. The kernel is an in-process IPython
``InteractiveShell`` (the same machinery ipykernel wraps): state carries over between cells and
magics work, and there is no kernel start or ZeroMQ round trip per cell. Records::

    {"type": "start", "t": monotonic clock}    {"type": "ready", "t": ...}  (imports done)
    {"type": "cell", "nb": name, "index": i, "ok": bool, "error": str|null, "stdout": str, "stderr": str}
    {"type": "check", "task": id, "cell": i, "value": plain}      (from medai.autograder.lab)
    {"type": "done"}

Job layout (read-only): ``/job/job.json`` (notebooks and the trusted task file), ``/job/files/``
(the sanitized notebooks and the lab's released files), ``/job/inputs/`` (grader-drawn inputs).
The working directory is the sandbox's scratch tmpfs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

STREAM_LIMIT = 20_000  # characters of stdout/stderr kept per cell


class _Capture:
    """A bounded text sink standing in for sys.stdout / sys.stderr during a cell."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.truncated = False

    def write(self, text: str) -> int:
        if self.size < self.limit:
            keep = text[: self.limit - self.size]
            self.parts.append(keep)
            self.size += len(keep)
            if len(keep) < len(text):
                self.truncated = True
        else:
            self.truncated = True
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def text(self) -> str:
        out = "".join(self.parts)
        return out + ("\n[output truncated by the grader]\n" if self.truncated else "")


def main(job_dir: str = "/job") -> None:
    job = json.loads(Path(job_dir, "job.json").read_text())
    channel = os.fdopen(int(os.environ["MEDAI_RESULT_FD"]), "w", buffering=1)

    def emit(record: dict) -> None:
        channel.write(json.dumps(record) + "\n")
        channel.flush()

    emit({"type": "start", "t": time.monotonic()})  # clock readings: benchmarks only
    work = Path.cwd()
    for item in Path(job_dir, "files").iterdir():
        dest = work / item.name
        if item.is_dir():
            shutil.copytree(item, dest)
        else:
            shutil.copy(item, dest)

    from IPython.core.interactiveshell import InteractiveShell

    from medai.autograder import lab
    from medai.autograder.tasks import parse_tasks

    state = lab._enter_grading(parse_tasks(job["tasks"]), Path(job_dir, "inputs"), emit)
    emit({"type": "ready", "t": time.monotonic()})
    sys.path.insert(0, str(work))
    real_out, real_err = sys.stdout, sys.stderr
    sys.stdin = open(os.devnull)  # noqa: SIM115 - input() in a cell reads EOF, never blocks
    for nb_name in job["notebooks"]:
        InteractiveShell.clear_instance()
        shell = InteractiveShell.instance(colors="NoColor", history_length=0)
        shell.history_manager.enabled = False
        nb = json.loads((work / nb_name).read_text())
        for index, cell in enumerate(nb["cells"]):
            if cell.get("cell_type") != "code":
                continue
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            out, err = _Capture(STREAM_LIMIT), _Capture(STREAM_LIMIT)
            state.cell, state.nb = index, nb_name
            t0 = time.perf_counter()
            sys.stdout, sys.stderr = out, err
            try:
                result = shell.run_cell(source, store_history=True)
                error = result.error_before_exec or result.error_in_exec
            except BaseException as exc:  # a cell must not end the run
                error = exc
            finally:
                sys.stdout, sys.stderr = real_out, real_err
            emit(
                {
                    "type": "cell",
                    "nb": nb_name,
                    "index": index,
                    "ok": error is None,
                    "error": None if error is None else f"{type(error).__name__}: {error}"[:2000],
                    "stdout": out.text(),
                    "stderr": err.text(),
                    "seconds": round(time.perf_counter() - t0, 4),
                }
            )
    emit({"type": "done"})
    channel.close()
    os._exit(0)  # skip atexit hooks a cell may have registered


if __name__ == "__main__":
    main(*sys.argv[1:])
