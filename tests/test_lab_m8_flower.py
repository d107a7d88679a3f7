"""Lab 8's Flower demonstration: a real SuperLink and one SuperNode per hospital, on loopback.

Runs ``labs/m8-federated/flower/run_demo.py`` once (Flower's deployment engine: separate
processes talking HTTP, no simulation and no Ray), one round without federated evaluation to keep
it short, on a freshly generated ``multisite`` dataset. Checks that every hospital's SuperNode
took part, that the model Flower produced is the one the same FedAvg computes in a single process
(the federation moves the computing, not the result), that it is a real model at every
hospital after one round, and that no process it started is left running.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medai.testing.labkit import generate

DEMO = Path(__file__).resolve().parent.parent / "labs" / "m8-federated" / "flower" / "run_demo.py"


def _load_demo():
    spec = importlib.util.spec_from_file_location("m8_flower_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _flower_processes() -> set[int]:
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
                if b"flower-super" in cmd or b"flwr-" in cmd:
                    found.add(int(proc.name))
    return found


@pytest.mark.slow
def test_flower_deployment_runs_the_same_fedavg_with_a_supernode_per_hospital(tmp_path):
    data = generate("multisite", tmp_path / "data", n=6000, seed=0) / "public" / "multisite"
    before = _flower_processes()  # other people's, on a shared machine
    demo = _load_demo()
    t0 = time.monotonic()
    result = demo.run(data, rounds=1, local_steps=2, ridge=1.0, timeout=400, evaluate=False)
    seconds = time.monotonic() - t0
    print(f"Flower deployment: 8 SuperNodes, 1 round: {seconds:.1f} s", file=sys.__stdout__)
    assert result["hospitals"] == 8
    assert set(result["auroc"]) == {f"site_{c}" for c in "ABCDEFGH"}
    for site, a in result["auroc"].items():
        assert a == pytest.approx(result["auroc_in_process"][site], abs=1e-6), site
    reference = demo.in_process(sorted(data.glob("site_*.csv")), 1, 2, 1.0)
    np.testing.assert_allclose(result["weights"], reference["weights"], rtol=1e-8, atol=1e-10)
    assert min(result["auroc"].values()) > 0.65  # a real model everywhere, after one round
    deadline = time.monotonic() + 30  # the SuperExec helpers watch their parents and exit
    while (left := _flower_processes() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"Flower processes left running: {sorted(left)}"
    assert os.environ.get("FLWR_HOME") is None  # the demo's Flower home stayed its own
