"""Run lab 8's Flower app on this machine: one SuperLink and one SuperNode per hospital.

This is Flower's *deployment* engine (no simulation, no Ray): real, separate processes that talk
gRPC over the loopback network, as they would across hospitals. Each SuperNode is told only the
path of its own hospital's table (``--node-config``); the SuperLink runs the ServerApp, which sees
summaries and model weights, never a patient row. Ports are picked free at start, so several
trainees on one machine do not collide, and everything is stopped at the end.

    python run_demo.py [--data DIR] [--rounds 3] [--local-steps 2] [--json OUT]

``DIR`` holds the ``site_*.csv`` tables of the ``multisite`` dataset (default: the course's copy
under ``$MEDAI_DATA``, or a local one generated like the notebook's). It prints the federated
evaluation by round, and the AUROC on every hospital's own patients next to the same FedAvg run
in one process (they agree: the federation changes where the computing happens, not the result).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited early; its log:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout:.0f} s; see {log}")


def default_data() -> Path:
    from medai.autograder.lab import data_dir

    return data_dir("multisite", n=6000, seed=0)


def in_process(tables: list[Path], rounds: int, local_steps: int, ridge: float) -> dict:
    """The same FedAvg without Flower: every hospital in this one process."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    from m8flower.task import combine, design, load_site, newton_steps

    data = [load_site(str(t))[:2] for t in tables]
    mean, sd = combine([(len(X), X.sum(0), (X**2).sum(0)) for X, _ in data])
    w = np.zeros(len(mean) + 1)
    total = sum(len(y) for _, y in data)
    for _ in range(rounds):
        w = sum(
            newton_steps(w, design(X, mean, sd), y, local_steps, ridge) * len(y) for X, y in data
        )
        w = w / total
    return {"weights": w.tolist(), "mean": mean.tolist(), "sd": sd.tolist()}


def per_hospital_auroc(model: dict, tables: list[Path]) -> dict[str, float]:
    import numpy as np

    sys.path.insert(0, str(HERE))
    from m8flower.task import auroc, design, load_site

    out = {}
    for t in tables:
        X, y, _ = load_site(str(t))
        out[t.stem] = auroc(
            y,
            design(X, np.asarray(model["mean"]), np.asarray(model["sd"]))
            @ np.asarray(model["weights"]),
        )
    return out


def run(
    data: Path, rounds: int, local_steps: int, ridge: float, timeout: float, evaluate: bool = True
) -> dict:
    tables = sorted(data.glob("site_*.csv"))
    if not tables:
        raise SystemExit(
            f"no site_*.csv tables in {data}: pass --data, the multisite dataset folder"
        )
    work = Path(tempfile.mkdtemp(prefix="medai-flower-"))
    home = work / "flwr-home"
    home.mkdir()
    link = free_port()  # the SuperLink's one HTTP port: Fleet, Control and Runtime APIs
    # the Flower configuration: one SuperLink connection, to ours, without TLS (loopback only)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "demo"\n\n[superlink.demo]\naddress = "127.0.0.1:{link}"\n'
        "insecure = true\n"
    )
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"  # its helpers: flower-superexec, ...
    env = {**os.environ, "FLWR_HOME": str(home), "PYTHONUNBUFFERED": "1", "PATH": path}
    procs: list[subprocess.Popen] = []
    t0 = time.monotonic()
    try:
        log = work / "superlink.log"
        superlink = subprocess.Popen(
            [
                str(BIN / "flower-superlink"),
                "--insecure",
                "--host",
                "127.0.0.1",
                "--port",
                str(link),
                "--disable-runtime-dependency-installation",  # everything is installed already
            ],  # fmt: skip
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            cwd=work,
        )
        procs.append(superlink)
        wait_for_port(link, superlink, log)
        for table in tables:  # one SuperNode per hospital, told only where its own data are
            node_log = work / f"supernode-{table.stem}.log"
            procs.append(
                subprocess.Popen(
                    [
                        str(BIN / "flower-supernode"),
                        "--insecure",
                        "--superlink",
                        f"127.0.0.1:{link}",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(free_port()),
                        "--node-config",
                        f"csv='{table}'",
                    ],  # fmt: skip
                    env=env,
                    stdout=node_log.open("w"),
                    stderr=subprocess.STDOUT,
                    cwd=work,
                )
            )
        out_file = work / "model.json"
        overrides = (
            f"num-server-rounds={rounds} local-steps={local_steps} ridge={ridge} "
            f"hospitals={len(tables)} fraction-evaluate={1.0 if evaluate else 0.0} "
            f"out-file='{out_file}'"
        )
        started = time.monotonic()
        done = subprocess.run(
            [str(BIN / "flwr"), "run", str(HERE), "demo", "--stream", "--run-config", overrides],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0 or not out_file.exists():
            logs = "\n".join(
                f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(work.glob("*.log"))
            )
            raise RuntimeError(
                f"flwr run failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{logs}"
            )
        model = json.loads(out_file.read_text())
        model["seconds"] = {"total": time.monotonic() - t0, "run": time.monotonic() - started}
    finally:
        for p in reversed(procs):  # only the processes started here, by their ids
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
    reference = in_process(tables, rounds, local_steps, ridge)
    model["auroc"] = per_hospital_auroc(model, tables)
    model["auroc_in_process"] = per_hospital_auroc(reference, tables)
    model["rounds"] = rounds
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="folder with the site_*.csv tables")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--local-steps", type=int, default=2)
    ap.add_argument("--ridge", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--no-evaluate", action="store_true", help="skip federated evaluation")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    result = run(
        args.data or default_data(),
        args.rounds,
        args.local_steps,
        args.ridge,
        args.timeout,
        evaluate=not args.no_evaluate,
    )
    print(f"{result['hospitals']} SuperNodes, {result['rounds']} rounds in {result['seconds']['run']:.1f} s "
          f"({result['seconds']['total']:.1f} s with start-up)")  # fmt: skip
    for r, m in sorted(result["evaluate"].items(), key=lambda kv: int(kv[0])):
        print(f"round {r}: federated evaluation, AUROC averaged over hospitals {m['auroc']:.3f}")
    print("AUROC on each hospital's own patients: Flower | the same FedAvg in one process")
    for site, a in result["auroc"].items():
        print(f"  {site}: {a:.3f} | {result['auroc_in_process'][site]:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
