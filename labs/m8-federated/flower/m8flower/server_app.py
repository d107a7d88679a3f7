"""The coordinator: standardisation from summaries, then FedAvg rounds (Flower's strategy)."""

from __future__ import annotations

import json
import time
from logging import INFO

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.supercore import log

from m8flower.task import combine

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    want, deadline = int(cfg["hospitals"]), time.monotonic() + 120
    while len(nodes := list(grid.get_node_ids())) < want and time.monotonic() < deadline:
        time.sleep(0.5)  # SuperNodes may still be connecting
    log(INFO, "%d of %d hospitals connected", len(nodes), want)
    # round 0: every hospital sends (n, sums, sums of squares); no patient-level row leaves
    asks = [grid.create_message(RecordDict(), MessageType.QUERY, node, "") for node in nodes]
    parts = []
    for reply in grid.send_and_receive(asks):
        sums, squares = reply.content["summaries"].to_numpy_ndarrays()
        parts.append((int(reply.content["metrics"]["n"]), sums, squares))
    mean, sd = combine(parts)
    config = ConfigRecord(
        {
            "mean": mean.tolist(),
            "sd": sd.tolist(),
            "local-steps": int(cfg["local-steps"]),
            "ridge": float(cfg["ridge"]),
        }
    )
    evaluate = float(cfg["fraction-evaluate"])  # federated evaluation costs a message a round
    strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=evaluate,
        min_train_nodes=len(nodes),
        min_evaluate_nodes=len(nodes) if evaluate else 0,
        min_available_nodes=len(nodes),
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord([np.zeros(len(mean) + 1)]),
        num_rounds=int(cfg["num-server-rounds"]),
        train_config=config,
        evaluate_config=config,
    )
    weights = result.arrays.to_numpy_ndarrays()[0]
    evaluated = {r: dict(m) for r, m in result.evaluate_metrics_clientapp.items()}
    log(INFO, "federated AUROC by round (mean over hospitals): %s", evaluated)
    if cfg["out-file"]:
        with open(str(cfg["out-file"]), "w", encoding="utf-8") as fh:
            out = {"weights": weights.tolist(), "mean": mean.tolist(), "sd": sd.tolist()}
            json.dump({**out, "hospitals": len(nodes), "evaluate": evaluated}, fh)
