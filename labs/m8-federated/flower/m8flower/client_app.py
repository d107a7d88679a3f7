"""The hospital side: answers the server's questions about its own data, never with a row."""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from m8flower.task import auroc, design, load_site, newton_steps, sigmoid, summaries

app = ClientApp()


def _data(context: Context):
    return load_site(str(context.node_config["csv"]))


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Round 0: the summaries the server needs to standardise (size, sums, sums of squares)."""
    X, _, _ = _data(context)
    n, total, squares = summaries(X)
    arrays = ArrayRecord([total, squares])
    return Message(
        RecordDict({"summaries": arrays, "metrics": MetricRecord({"n": n})}), reply_to=msg
    )


@app.train()
def train(msg: Message, context: Context) -> Message:
    """A round: start from the global weights, take Newton steps on local data, send weights."""
    X, y, _ = _data(context)
    cfg = msg.content["config"]
    mean, sd = np.asarray(cfg["mean"]), np.asarray(cfg["sd"])
    w = msg.content["arrays"].to_numpy_ndarrays()[0]
    w = newton_steps(w, design(X, mean, sd), y, int(cfg["local-steps"]), float(cfg["ridge"]))
    reply = RecordDict(
        {"arrays": ArrayRecord([w]), "metrics": MetricRecord({"num-examples": len(y)})}
    )
    return Message(reply, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Federated evaluation: the global model's AUROC on this hospital's own patients."""
    X, y, _ = _data(context)
    cfg = msg.content["config"]
    w = msg.content["arrays"].to_numpy_ndarrays()[0]
    score = sigmoid(design(X, np.asarray(cfg["mean"]), np.asarray(cfg["sd"])) @ w)
    metrics = MetricRecord({"auroc": auroc(y, score), "num-examples": len(y)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
