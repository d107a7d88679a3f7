"""``kind: predict``: a scikit-learn model, refit on the public training rows and scored by
AUROC on the hidden split's labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from medai.autograder.kinds.base import Kind, Prepared, Preparing, describe, say
from medai.autograder.tasks import TableRef, _Strict


def _features(task: Any, X: Any) -> Any:
    import pandas as pd

    if not isinstance(X, pd.DataFrame):
        raise TypeError(
            f"pass the feature table too: check(task, model, X) with X a DataFrame indexed by "
            f"{task.id_column}"
        )
    if task.id_column in X.columns:
        X = X.set_index(task.id_column)
    X = X.copy()
    X.index = X.index.astype(str)
    return X


def _rows(task: Any) -> tuple[Any, Any, list[str]]:
    from medai.autograder.lab import read_table

    train = read_table(task.dataset, task.train_labels)
    ids = read_table(task.dataset, task.test_ids.table)
    for col, want in task.test_ids.where.items():
        ids = ids[ids[col] == want]
    y = train.set_index(train[task.id_column].astype(str))[task.target]
    return y.index, y, [str(i) for i in ids[task.id_column]]


def _scores(model: Any, X: Any) -> Any:
    import numpy as np

    if hasattr(model, "predict_proba"):
        s = np.asarray(model.predict_proba(X))
        return s[:, 1] if s.ndim == 2 else s
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(X))
    raise TypeError("the model needs predict_proba or decision_function")


def _fit(model: Any, X: Any, y: Any) -> Any:
    from sklearn.base import clone

    if not hasattr(model, "fit"):
        raise TypeError(f"expected a scikit-learn estimator, got {type(model).__name__}")
    return clone(model).fit(X, y)


class PredictTask(_Strict):
    kind: Literal["predict"]
    dataset: str
    id_column: str
    target: str
    train_labels: str = Field(description="Public table with the training labels.")
    test_ids: TableRef = Field(description="Public rows whose outcome the model predicts.")
    hidden_labels: str = Field(description="Hidden table with the test labels (scorer only).")
    metric: Literal["auroc"] = "auroc"
    full_marks_at: float = Field(0.8, description="Metric value that earns all the points.")
    zero_marks_at: float = Field(0.6, description="Metric value at or below which it earns 0.")
    public_holdout: float = Field(0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _order(self) -> PredictTask:
        if self.full_marks_at <= self.zero_marks_at:
            raise ValueError("full_marks_at must be above zero_marks_at")
        return self


class PredictKind(Kind):
    name = "predict"
    model = PredictTask
    report_fatal = True  # a reference below full marks means the lab is broken

    def check(self, task_id: str, task: Any, model: Any, extra: tuple) -> bool:
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import train_test_split

        from medai.autograder.scoring import metric_fraction

        try:
            X = _features(task, extra[0] if extra else None)
            train_ids, y, _ = _rows(task)
            fit_ids, val_ids = train_test_split(
                list(train_ids),
                test_size=task.public_holdout,
                random_state=0,
                stratify=y.to_numpy(),
            )
            fitted = _fit(model, X.loc[fit_ids], y.loc[fit_ids].to_numpy())
            auc = float(roc_auc_score(y.loc[val_ids].to_numpy(), _scores(fitted, X.loc[val_ids])))
        except Exception as exc:
            return say(False, task_id, f"could not fit and score the model: {describe(exc)}")
        frac = metric_fraction(auc, task.zero_marks_at, task.full_marks_at)
        msg = (
            f"AUROC {auc:.3f} on {len(val_ids)} held-out public training rows (full marks at "
            f">= {task.full_marks_at}, none at <= {task.zero_marks_at}: this would earn "
            f"{frac:.0%}). The grade uses the hidden split."
        )
        return say(frac >= 1.0, task_id, msg)

    def record(self, task_id: str, task: Any, model: Any, extra: tuple, inputs_dir: Path) -> Any:
        """Fit on the public training rows; scores for the rows to predict (never a label)."""
        import pandas as pd

        X = _features(task, extra[0] if extra else None)
        train_ids, y, test_ids = _rows(task)
        missing = [i for i in test_ids if i not in X.index]
        if missing:
            raise ValueError(f"the feature table lacks {len(missing)} of the rows to predict")
        fitted = _fit(model, X.loc[train_ids], y.loc[train_ids].to_numpy())
        scores = _scores(fitted, X.loc[test_ids]).astype(float)
        return pd.Series(scores, index=test_ids)

    def prepare(self, task: Any, ctx: Preparing) -> Prepared:
        """The hidden labels by id (trusted side: read from ``<data root>/hidden``)."""
        from medai.autograder.steps.prepare import read_table

        table = read_table(ctx.need_data() / "hidden" / task.dataset, task.hidden_labels)
        labels = {
            str(i): int(v) for i, v in zip(table[task.id_column], table[task.target], strict=True)
        }
        return Prepared(state=labels, datasets=[task.dataset])

    def score(self, task: Any, got: Any, expected: Any, state: Any) -> Any:
        from medai.autograder.scoring import score_predict

        return score_predict(task, got, state)
