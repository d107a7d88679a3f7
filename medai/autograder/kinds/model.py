"""``kind: model``: a predict function, called on a split's public inputs and scored by the
task's metrics on the hidden labels (optionally with a membership attack and a clinician)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from medai.autograder.kinds.base import Kind, Prepared, Preparing, describe, say
from medai.autograder.tasks import MetricSpec, OracleSpec, OutputSpec, Split, _Strict


def _run_predict(task: Any, fn: Any, split: str) -> tuple[Any, Any]:
    """Load the public inputs of ``split`` (dev, test or members), call ``fn`` on them; validate."""
    from medai.autograder.lab import data_dir
    from medai.autograder.modeldata import load_source, to_plain_output, validate_output

    if not callable(fn):
        raise TypeError(f"expected a predict function, got {type(fn).__name__}")
    src = getattr(task, split).inputs
    inputs = load_source(src, data_dir(task.dataset))  # public only: no hidden folder given
    n = len(inputs.value)
    pred = to_plain_output(fn(inputs.value), task.output, inputs.ids)
    return inputs, validate_output(pred, task.output, n)


def model_truth(tid: str, task: Any, data_root: Path | None) -> Any:
    """The hidden test labels of a model task, aligned to its public test inputs (trusted side)."""
    from medai.autograder import GradingError
    from medai.autograder.modeldata import align, load_groups, load_source
    from medai.autograder.scoring import ModelTruth

    root = Preparing(tid, 0, Path(), "", data_root).need_data()
    public, hidden = root / "public" / task.dataset, root / "hidden" / task.dataset
    try:
        inputs = load_source(task.test.inputs, public)
        labels = load_source(task.test.labels, public, hidden)
        aligned = align(inputs, labels, f"task '{tid}' test split")
        groups = load_groups(task.test, inputs, public)
    except (OSError, KeyError, ValueError) as exc:
        raise GradingError(
            f"task '{tid}': cannot load the test split of dataset '{task.dataset}' under "
            f"{root}: {exc}. Check tasks.yaml (test.inputs / test.labels) and that "
            f"`medai data generate {task.dataset}` wrote both public/ and hidden/"
        ) from None
    if task.members is None:
        return ModelTruth(aligned, len(inputs.value), groups)
    try:
        m_inputs = load_source(task.members.inputs, public)
        m_labels = align(
            m_inputs, load_source(task.members.labels, public), f"task '{tid}' members"
        )
    except (OSError, KeyError, ValueError) as exc:
        raise GradingError(
            f"task '{tid}': cannot load the members split of dataset '{task.dataset}' under "
            f"{root}: {exc}. Check tasks.yaml (members.inputs / members.labels)"
        ) from None
    return ModelTruth(
        aligned, len(inputs.value), groups, members_labels=m_labels, n_members=len(m_inputs.value)
    )


def oracle_pool(tid: str, task: Any, data_root: Path | None) -> Any:
    """The hidden labels of a task's graded pool, by id, for the clinician (trusted side)."""
    import numpy as np

    from medai.autograder import GradingError
    from medai.autograder.modeldata import load_source
    from medai.autograder.oracle import PoolLabels

    assert task.oracle is not None and data_root is not None  # model_truth checked the root
    public = data_root / "public" / task.dataset
    hidden = data_root / "hidden" / task.dataset
    try:
        pool = load_source(task.oracle.graded.inputs, public)
        labels = load_source(task.oracle.graded.labels, public, hidden)
    except (OSError, KeyError, ValueError) as exc:
        raise GradingError(
            f"task '{tid}': cannot load the clinician's graded pool of dataset "
            f"'{task.dataset}' under {data_root}: {exc}. Check tasks.yaml (oracle.graded)"
        ) from None
    if pool.ids is None or labels.ids is None:
        raise GradingError(
            f"task '{tid}': oracle.graded needs ids on both inputs and labels (id_column), so "
            "the clinician can answer by id"
        )
    by_id = dict(zip(labels.ids, np.asarray(labels.value).tolist(), strict=True))
    missing = [i for i in pool.ids if i not in by_id]
    if missing:
        raise GradingError(
            f"task '{tid}': {len(missing)} case(s) of the clinician's pool have no hidden label "
            f"(e.g. {missing[0]}); regenerate the dataset"
        )
    return PoolLabels({i: by_id[i] for i in pool.ids}, task.oracle.budget)


class ModelTask(_Strict):
    kind: Literal["model"]
    dataset: str
    dev: Split = Field(description="A labelled public split: instant feedback.")
    test: Split = Field(description="Public inputs, hidden labels: the grade.")
    output: OutputSpec
    metrics: list[MetricSpec] = Field(min_length=1)
    oracle: OracleSpec | None = Field(
        None, description="An expert the notebook may ask for labels (active learning)."
    )
    members: Split | None = Field(
        None,
        description="Public, labelled training cases of the model: a membership-inference "
        "metric attacks them against the test cases (dev cases while you work).",
    )

    @model_validator(mode="after")
    def _fits(self) -> ModelTask:
        from medai.autograder.metrics import METRICS

        if self.dev.labels.hidden:
            raise ValueError("dev.labels must be public: the instant feedback uses them")
        if not self.test.labels.hidden:
            raise ValueError(
                "test.labels must say `hidden: true` (read from <root>/hidden/<dataset>/ by the "
                "scorer only); a public test split would let trainees fit on it"
            )
        membership = [m.name for m in self.metrics if METRICS[m.name].membership]
        if membership and self.members is None:
            raise ValueError(
                f"metric(s) {membership} attack the model's training cases: give `members:` "
                "(their public inputs and labels)"
            )
        if self.members is not None and self.members.labels.hidden:
            raise ValueError("members.labels must be public: they are the model's training data")
        for m in self.metrics:
            if METRICS[m.name].grouped and (self.dev.groups is None or self.test.groups is None):
                raise ValueError(
                    f"metric '{m.name}' is computed by group: give `groups` (a public source "
                    "of each input's group) in both dev and test"
                )
            ok = METRICS[m.name].accepts
            if not ok(self.output):
                raise ValueError(
                    f"metric '{m.name}' needs {METRICS[m.name].needs}, not a "
                    f"{self.output.type} output"
                    + (f" with {self.output.classes} classes" if self.output.classes else "")
                )
        return self


class ModelKind(Kind):
    name = "model"
    model = ModelTask

    def check(self, task_id: str, task: Any, fn: Any, extra: tuple) -> bool:
        import numpy as np

        from medai.autograder.lab import data_dir
        from medai.autograder.metrics import METRICS, MetricError, by_group, compute
        from medai.autograder.modeldata import (
            OutputError,
            align,
            load_groups,
            load_source,
            validate_output,
        )
        from medai.autograder.scoring import membership_pairs, metric_fraction

        try:
            inputs, pred = _run_predict(task, fn, "dev")
        except OutputError as exc:
            return say(False, task_id, f"the predictions are malformed: {exc}")
        except Exception as exc:
            return say(False, task_id, f"could not run the predict function: {describe(exc)}")
        try:
            labels = align(
                inputs, load_source(task.dev.labels, data_dir(task.dataset)), "dev split"
            )
            groups = load_groups(task.dev, inputs, data_dir(task.dataset))
        except Exception as exc:  # a lab or data problem, not the trainee's
            return say(False, task_id, f"could not load the dev labels: {describe(exc)}")
        if task.output.type == "mask":  # now that the labels are known, check the mask size
            try:
                validate_output(pred, task.output, len(pred), np.asarray(labels).shape[1:])
            except OutputError as exc:
                return say(False, task_id, f"the predictions are malformed: {exc}")
        members = None
        if task.members is not None:  # the membership attack: members against the dev cases
            try:
                m_inputs, m_pred = _run_predict(task, fn, "members")
                m_labels = align(
                    m_inputs, load_source(task.members.labels, data_dir(task.dataset)), "members"
                )
            except OutputError as exc:
                return say(False, task_id, f"the predictions for the members are malformed: {exc}")
            except Exception as exc:
                return say(False, task_id, f"could not predict the members: {describe(exc)}")
            members = (m_labels, m_pred)
        parts, fracs = [], []
        for m in task.metrics:
            y, scored, g = labels, pred, groups
            if METRICS[m.name].membership and members is not None:
                y, scored = membership_pairs(members[0], members[1], labels, pred)
                g = None  # the attack pairs members with dev cases: dev groups do not apply
            try:
                value = compute(m.name, y, scored, match_label=m.match_label, groups=g)
            except MetricError as exc:
                return say(False, task_id, str(exc))
            frac = metric_fraction(value, m.zero_marks_at, m.full_marks_at)
            fracs.append(frac)
            cmp = ">=" if m.full_marks_at > m.zero_marks_at else "<="
            detail = by_group(m.name, labels, pred, groups)
            parts.append(
                f"{m.name} {value:.3f} (full marks at {cmp} {m.full_marks_at:g}, none at "
                f"{'<=' if cmp == '>=' else '>='} {m.zero_marks_at:g})"
                + (f" [{detail}]" if detail else "")
            )
        n = len(pred)
        more = f" and {len(members[1])} members" if members is not None else ""
        msg = (
            "; ".join(parts) + f" on {n} labelled dev cases{more}: this would earn "
            f"{sum(fracs) / len(fracs):.0%}. The grade uses the hidden test split."
        )
        return say(min(fracs) >= 1.0, task_id, msg)

    def record(self, task_id: str, task: Any, fn: Any, extra: tuple, inputs_dir: Path) -> Any:
        """Predictions for the test inputs (public files), never any label. With ``members:``,
        the predictions for the members too (the scorer attacks them)."""
        _, pred = _run_predict(task, fn, "test")
        if task.members is None:
            return pred
        return {"test": pred, "members": _run_predict(task, fn, "members")[1]}

    def prepare(self, task: Any, ctx: Preparing) -> Prepared:
        truth = model_truth(ctx.task_id, task, ctx.data_root)
        oracle = oracle_pool(ctx.task_id, task, ctx.data_root) if task.oracle else None
        return Prepared(state=truth, datasets=[task.dataset], oracle=oracle)

    def score(self, task: Any, got: Any, expected: Any, state: Any) -> Any:
        from medai.autograder.scoring import score_model

        return score_model(task, got, state)
