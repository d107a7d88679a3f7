"""Disclosure control: decide what of a job's output may leave the sandbox (trusted code).

The job returns a request (:mod:`medai.sandbox.outputs`) and the rows it used; every number
that is released is recomputed here from the private data with the field's libraries:

- tables and regressions: ACRO (the SACRO project's output checker) with the dataset's
  threshold, dominance (n-k) and p-ratio rules and automatic suppression of failing cells;
  counts are then rounded to the policy's base, means to its decimals;
- differentially private counts and means: OpenDP's Laplace mechanism, charged to a
  per-trainee budget;
- models: a logistic regression is refitted on the same rows (so the trainee's parameters, which
  could encode anything, never leave: only the refit does, once it matches), then SACRO-ML's
  worst-case membership-inference attack is run against it with the rows left out as
  non-members.

Written by hand, because no library checks it: that the rows are real rows of the data
(no duplicates, unchanged values), the threshold on a subset and its complement, differencing
between a trainee's releases (two subsets that differ by fewer than ``min_cell`` patients),
identifier and free-text columns, and that every string released is a schema name or appears
literally in the submitted code (so it was chosen before the code saw any data).

A decision is ``released``, ``held`` (for the data owner) or ``refused``, with the rule's name.
"""

from __future__ import annotations

import ast
import logging
import math
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from medai.config import ReleasePolicy
from medai.sandbox import cohort
from medai.sandbox.outputs import ROW, STATS

DERIVED_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
HOLDOUT_SHARE = 0.2  # a model's non-members: at least this share of the rows left out
# ACRO checks whose failing cells its suppression already handles; PresenceOfLinkedTableCheck
# asks for a manual differencing review, which the differencing rule here does on every release
ACRO_HANDLED = {
    "PresenceOfLinkedTableCheck",
    "MinimumThresholdCheck",
    "NKCheck",
    "PPercentCheck",
    "PresenceOfZeroCheck",
    "RequiredZeroCheck",
}


@dataclass
class Decision:
    status: str  # released | held | refused
    rule: str  # the rule that decided (``ok`` when released)
    message: str  # for the trainee: names the rule, never a data value
    output: dict | None = None  # what is released (plain JSON)
    subsets: list[np.ndarray] = field(default_factory=list)  # row sets released (differencing)
    epsilon: float = 0.0  # DP budget spent
    detail: dict = field(default_factory=dict)  # for the data owner only (held outputs)


def _refuse(rule: str, message: str) -> Decision:
    return Decision("refused", rule, message)


def code_strings(code: str) -> set[str | int]:
    """String and integer literals and names in the submitted code (fixed before it saw the data)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)):
            out.add(node.value)
        elif isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.Attribute):
            out.add(node.attr)
    return out


def _round_base(x: float, base: int) -> int:
    return int(base * round(float(x) / base))


def _num(x, decimals: int):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), decimals)


class Checker:
    """Disclosure control for one dataset (its private data and policy)."""

    def __init__(self, private: pd.DataFrame, policy: ReleasePolicy) -> None:
        self.private = private.reset_index(drop=True)
        self.policy = policy
        self.n = len(private)
        roles = {c[0]: c[2] for c in cohort.SCHEMA}
        self.roles = roles
        self.protected = {c for c, r in roles.items() if r in ("identifier", "text")}
        self.numeric = {c for c, r in roles.items() if r in ("numeric", "outcome")}
        self.category = {c for c, r in roles.items() if r == "category"}

    # ---- the rows a job used --------------------------------------------------------------

    def _frame(self, columns: dict, names: set[str], code: set[str]) -> pd.DataFrame | Decision:
        rows = columns.get(ROW)
        if not isinstance(rows, list) or not all(
            isinstance(r, int) and not isinstance(r, bool) for r in rows
        ):
            return _refuse("rows", f"keep the '{ROW}' column of the data you were given")
        arr = np.asarray(rows, dtype=np.int64)
        if len(arr) and (arr.min() < 0 or arr.max() >= self.n):
            return _refuse("rows", f"the '{ROW}' column was changed; keep it as given")
        if len(np.unique(arr)) != len(arr):
            return _refuse("duplicated-rows", "a row appears twice: each patient counts once")
        frame = pd.DataFrame({ROW: arr})
        for name in names:
            if name not in columns:
                return _refuse("unknown-column", "the output names a column it did not return")
            if name in self.protected:
                return _refuse(
                    "identifier-column",
                    "identifier and free-text columns never leave the sandbox, not even grouped",
                )
            values = columns[name]
            if name in self.roles:
                real = self.private[name].to_numpy()[arr]
                given = pd.Series(values, dtype=object)
                if len(given) != len(arr) or not _same(real, given):
                    return _refuse(
                        "altered-data",
                        f"column '{name}' was changed; give a derived column a new name",
                    )
                frame[name] = real
            else:
                if not DERIVED_NAME.match(name) or name not in code:
                    return _refuse(
                        "derived-name",
                        "a derived column's name must appear literally in your code",
                    )
                frame[name] = values
        return frame

    def _subset_rules(self, rows: np.ndarray, history: list[np.ndarray]) -> Decision | None:
        p = self.policy
        k = len(rows)
        if k < p.min_cell or 0 < self.n - k < p.min_cell:
            return _refuse(
                "threshold",
                f"the rows used (or those left out) number fewer than {p.min_cell} patients",
            )
        mask = np.zeros(self.n, dtype=bool)
        mask[rows] = True
        for old in history:
            diff = int(np.count_nonzero(mask ^ old))
            if 0 < diff < p.min_cell:
                return _refuse(
                    "differencing",
                    f"these rows differ from rows of an earlier release by fewer than "
                    f"{p.min_cell} patients (a differencing attack)",
                )
        return None

    # ---- kinds ------------------------------------------------------------------------------

    def check(
        self,
        record: dict,
        code: str,
        history: list[np.ndarray],
        budget_left: float,
    ) -> Decision:
        req, columns = record.get("request", {}), record.get("columns", {})
        kind = req.get("kind")
        if kind not in ("table", "regression", "dp_count", "dp_mean", "model"):
            return _refuse("output-kind", "unknown output kind; use medai.sandbox.outputs")
        if kind not in self.policy.outputs:
            return _refuse("output-kind", f"outputs of kind '{kind}' are not allowed here")
        return getattr(self, f"_{kind}")(req, columns, code_strings(code), history, budget_left)

    def _table(self, req, columns, code, history, budget) -> Decision:
        p = self.policy
        by, value, stat = req.get("by"), req.get("value"), req.get("stat", "count")
        if stat in ("min", "max", "minimum", "maximum"):
            return _refuse("no-minima-maxima", "minima and maxima are never released")
        if stat not in STATS:
            return _refuse("statistic", f"statistic must be one of {', '.join(STATS)}")
        if (
            not isinstance(by, list)
            or not 1 <= len(by) <= 3
            or not all(isinstance(b, str) for b in by)
        ):
            return _refuse("table-shape", "group by one to three columns")
        if stat != "count" and (not isinstance(value, str) or value not in self.numeric):
            return _refuse("table-value", "the value column must be a numeric column of the schema")
        names = set(by) | ({value} if stat != "count" else set())
        frame = self._frame(columns, names, code)
        if isinstance(frame, Decision):
            return frame
        for b in by:
            if b in self.roles and b not in self.category and b not in self.numeric:
                return _refuse("identifier-column", "group by categories, not identifiers")
            if b not in self.roles:
                ok = frame[b].map(lambda v: _code_label(v, code))
                if not ok.all():
                    return _refuse(
                        "group-labels",
                        "a derived group column holds booleans, or labels (text or whole "
                        "numbers) written literally in your code, e.g. "
                        "pd.cut(df.age, [0, 65, 200], labels=['<65', '65+'])"
                        "in your code",
                    )
        rows = frame[ROW].to_numpy()
        bad = self._subset_rules(rows, history)
        if bad:
            return bad
        groups = frame.groupby(by, dropna=False)
        if groups.ngroups > p.max_cells:
            return _refuse("too-many-cells", f"at most {p.max_cells} cells per table")
        table, status, reasons = _acro_table(frame, by, value, stat, p)
        if table is None:
            return Decision("held", "acro", "held for the data owner: ACRO could not check it")
        review = status == "fail" or bool(reasons - ACRO_HANDLED)
        masks = {}
        for key, idx in groups.indices.items():
            key = key if isinstance(key, tuple) else (key,)
            masks[tuple(_label(k) for k in key)] = _mask(self.n, rows[idx])
        cells = []
        released = [_mask(self.n, rows)]
        if table.empty or table.columns.duplicated().any() or table.index.duplicated().any():
            # ACRO returns an empty (or oddly shaped) table when it suppresses every cell
            return _refuse("threshold", "every cell is below the threshold: nothing to release")
        flat = []
        for i, ikey in enumerate(table.index):
            for j, ckey in enumerate(table.columns):
                ik = ikey if isinstance(ikey, tuple) else (ikey,)
                ck = ckey if isinstance(ckey, tuple) else (ckey,)
                flat.append(((*ik, *ck), table.iat[i, j]))
        # labels of a suppressed cell are public only when every group column is a category
        # (its values are the schema's vocabulary); an exact value or a derived label of a
        # suppressed cell would say that some patient has it, so such cells are left out
        public_labels = all(b in self.category for b in by)
        hidden = 0
        for key, v in flat:
            if any(isinstance(k, float) and not math.isfinite(k) for k in key):
                continue  # pandas' missing-value group: no patient's value
            key = tuple(_label(k) for k in key if k != "__all__")
            gone = v is None or (isinstance(v, float) and not math.isfinite(v))
            if gone and not public_labels:
                hidden += 1
                continue
            if v is None or (isinstance(v, float) and not math.isfinite(v)):
                out = None
            elif stat == "count":
                out = _round_base(v, p.rounding_base)
            else:
                out = _num(v, p.mean_decimals)
            cells.append({"group": list(key), "value": out})
            if out is not None and key in masks:
                released.append(masks[key])
        for m in released[1:]:
            for old in history:
                d = int(np.count_nonzero(m ^ old))
                if 0 < d < p.min_cell:
                    return _refuse(
                        "differencing",
                        f"a cell differs from rows of an earlier release by fewer than "
                        f"{p.min_cell} patients (a differencing attack)",
                    )
        suppressed = sum(c["value"] is None for c in cells) + hidden
        if not cells or all(c["value"] is None for c in cells):
            return _refuse("threshold", "every cell is below the threshold: nothing to release")
        output = {
            "kind": "table",
            "by": by,
            "stat": stat,
            "value": value if stat != "count" else None,
            "cells": cells,
            "suppressed": suppressed,
            "rounding": p.rounding_base if stat == "count" else None,
        }
        if review:
            return Decision(
                "held",
                "acro-review",
                "held for the data owner (ACRO asks for a review)",
                output,
                subsets=released,
                detail={"acro_reasons": sorted(reasons)},
            )
        return Decision(
            "released",
            "ok",
            f"released ({suppressed} cell(s) suppressed)" if suppressed else "released",
            output,
            subsets=released,
        )

    def _regression(self, req, columns, code, history, budget) -> Decision:
        p = self.policy
        y, x, family = req.get("y"), req.get("x"), req.get("family", "ols")
        if family not in ("ols", "logit"):
            return _refuse("regression-family", "family must be 'ols' or 'logit'")
        if not isinstance(y, str) or not isinstance(x, list) or not x or len(x) > p.max_cells:
            return _refuse("regression-shape", "give y (a column) and x (a list of columns)")
        if y not in self.numeric or not all(isinstance(c, str) and c in self.numeric for c in x):
            return _refuse("regression-columns", "y and x must be numeric columns of the schema")
        frame = self._frame(columns, {y, *x}, code)
        if isinstance(frame, Decision):
            return frame
        rows = frame[ROW].to_numpy()
        bad = self._subset_rules(rows, history)
        if bad:
            return bad
        res, status = _acro_regression(frame, y, x, family, p)
        if res is None:
            return _refuse("regression-fit", "the regression could not be fitted on these rows")
        if status == "fail":
            return _refuse(
                "degrees-of-freedom",
                f"fewer than {p.min_cell} residual degrees of freedom",
            )
        d = p.mean_decimals + 2
        coef = {k: _num(v, d) for k, v in res.params.items()}
        se = {k: _num(v, d) for k, v in res.bse.items()}
        return Decision(
            "released",
            "ok",
            "released",
            {
                "kind": "regression",
                "family": family,
                "y": y,
                "coef": coef,
                "se": se,
                "n": _round_base(len(rows), p.rounding_base),
            },
            subsets=[_mask(self.n, rows)],
        )

    def _dp(self, req, columns, code, budget, column=None) -> Decision | tuple:
        eps = req.get("epsilon")
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < eps <= 10:
            return _refuse("epsilon", "epsilon must be a number in (0, 10]")
        if eps > budget + 1e-12:
            return _refuse("budget", "your privacy budget on this dataset is spent")
        frame = self._frame(columns, {column} if column else set(), code)
        return frame, float(eps)

    def _dp_count(self, req, columns, code, history, budget) -> Decision:
        got = self._dp(req, columns, code, budget)
        if isinstance(got, Decision):
            return got
        frame, eps = got
        if isinstance(frame, Decision):
            return frame
        import opendp.prelude as dp

        dp.enable_features("contrib")
        space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()
        meas = space >> dp.t.then_count() >> dp.m.then_laplace(scale=1.0001 / eps)
        assert meas.map(1) <= eps
        value = meas(frame[ROW].astype(float).tolist())
        return Decision(
            "released",
            "ok",
            "released",
            {"kind": "dp_count", "epsilon": eps, "value": int(value)},
            epsilon=eps,
        )

    def _dp_mean(self, req, columns, code, history, budget) -> Decision:
        col, lo, hi = req.get("column"), req.get("lower"), req.get("upper")
        if col not in self.numeric:
            return _refuse("dp-column", "the column must be a numeric column of the schema")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (lo, hi)) or lo >= hi:
            return _refuse("dp-bounds", "give finite bounds with lower < upper")
        got = self._dp(req, columns, code, budget, col)
        if isinstance(got, Decision):
            return got
        frame, eps = got
        if isinstance(frame, Decision):
            return frame
        import opendp.prelude as dp

        dp.enable_features("contrib")
        space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()
        half = eps / 2
        sens = max(abs(lo), abs(hi))
        total = (
            space
            >> dp.t.then_clamp((float(lo), float(hi)))
            >> dp.t.then_sum()
            >> dp.m.then_laplace(scale=1.0001 * sens / half)
        )
        count = space >> dp.t.then_count() >> dp.m.then_laplace(scale=1.0001 / half)
        assert total.map(1) <= half and count.map(1) <= half
        vals = frame[col].astype(float).tolist()
        mean = total(vals) / max(1, count(vals))
        return Decision(
            "released",
            "ok",
            "released",
            {"kind": "dp_mean", "column": col, "epsilon": eps, "value": _num(mean, 3)},
            epsilon=eps,
        )

    def _model(self, req, columns, code, history, budget) -> Decision:
        p = self.policy
        y, x, coef, icpt, C = (req.get(k) for k in ("y", "x", "coef", "intercept", "C"))
        if not isinstance(x, list) or not x or not isinstance(coef, list) or len(coef) != len(x):
            return _refuse("model-shape", "give x (columns) and one coefficient per column")
        if y not in self.numeric or not all(isinstance(c, str) and c in self.numeric for c in x):
            return _refuse("model-columns", "y and x must be numeric columns of the schema")
        if len(x) + 1 > p.max_cells:
            return _refuse("too-many-parameters", f"at most {p.max_cells} parameters")
        if not all(isinstance(v, (int, float)) for v in (*coef, icpt, C)) or not C > 0:
            return _refuse("model-shape", "coefficients, intercept and C must be numbers")
        frame = self._frame(columns, {y, *x}, code)
        if isinstance(frame, Decision):
            return frame
        rows = frame[ROW].to_numpy()
        left_out = self.n - len(rows)
        if left_out < HOLDOUT_SHARE * self.n:
            return _refuse(
                "model-holdout",
                f"train on at most {1 - HOLDOUT_SHARE:.0%} of the rows: the rest are the "
                "membership attack's non-members",
            )
        if len(rows) < p.min_cell * (len(x) + 1):
            return _refuse(
                "too-many-parameters",
                f"fewer than {p.min_cell} training patients per parameter",
            )
        from sklearn.linear_model import LogisticRegression

        X, Y = frame[x].to_numpy(float), frame[y].to_numpy()
        if len(np.unique(Y)) != 2:
            return _refuse("model-outcome", "the outcome must have two classes in the rows used")
        refit = LogisticRegression(C=float(C), max_iter=2000).fit(X, Y)
        theirs = np.r_[np.asarray(coef, float), float(icpt)]
        ours = np.r_[refit.coef_[0], refit.intercept_[0]]
        scale = np.maximum(1.0, np.abs(ours))
        if not np.all(np.abs(theirs - ours) <= 0.05 * scale):
            return Decision(
                "held",
                "model-not-reproducible",
                "held for the data owner: refitting on the same rows gives other parameters",
                detail={"refit": ours.round(4).tolist()},
            )
        mask = _mask(self.n, rows)
        hold = self.private.loc[~mask]
        Xh, Yh = hold[x].to_numpy(float), hold[y].to_numpy()
        try:
            auc = _worst_case_auc(refit.predict_proba(X), refit.predict_proba(Xh))
        except ImportError:  # SACRO-ML not installed: nobody checked, so a person must
            auc = None
        if auc is None or auc >= p.mia_auc_max:
            return Decision(
                "held",
                "membership-inference",
                "held for the data owner: the membership-inference attack did too well",
                detail={"mia_auc": auc},
            )
        d = p.mean_decimals + 2
        return Decision(
            "released",
            "ok",
            "released",
            {
                "kind": "model",
                "family": "logistic_regression",
                "x": x,
                "y": y,
                "coef": [_num(c, d) for c in refit.coef_[0]],
                "intercept": _num(refit.intercept_[0], d),
                "n_train": _round_base(len(rows), p.rounding_base),
                "checks": {
                    "membership_inference_auc": round(auc, 2),
                    "holdout_accuracy": round(float(refit.score(Xh, Yh)), 2),
                },
            },
            subsets=[mask],
        )


def _same(real: np.ndarray, given: pd.Series) -> bool:
    try:
        if real.dtype.kind in "iuf":
            g = pd.to_numeric(given, errors="coerce").to_numpy(float)
            return bool(np.allclose(real.astype(float), g, rtol=0, atol=1e-9, equal_nan=True))
        return bool(
            (
                pd.Series(real, dtype=object).astype(str).to_numpy() == given.astype(str).to_numpy()
            ).all()
        )
    except (TypeError, ValueError):
        return False


def _code_label(v, code: set) -> bool:
    """A derived group label carries nothing of the data if it is a boolean or a literal of
    the code (fixed before the code ran); any other value could have been computed from it."""
    if isinstance(v, bool):
        return True
    return isinstance(v, (str, int)) and v in code


def _label(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return int(v) if float(v).is_integer() else float(v)
    return str(v)


def _mask(n: int, rows: np.ndarray) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[rows] = True
    return m


def _acro(policy: ReleasePolicy):
    import acro

    # ACRO logs every output at INFO to loggers named "acro", "acro:records", ... (a colon, so
    # not children of "acro"): quiet them all, the audit log keeps what matters
    def quiet() -> None:
        for name in [n for n in logging.root.manager.loggerDict if n.split(":")[0] == "acro"]:
            logging.getLogger(name).setLevel(logging.ERROR)

    quiet()
    session = acro.ACRO(suppress=True)
    quiet()
    session.config.update(
        safe_threshold=policy.min_cell,
        safe_dof_threshold=policy.min_cell,
        safe_nk_n=policy.nk_n,
        safe_nk_k=policy.nk_k,
        safe_pratio_p=policy.p_ratio,
    )
    return session


def _acro_status(session) -> tuple[str, set[str]]:
    (out,) = list(session.results.results.values())
    sdc = out.sdc or {}
    reasons = {k for k, v in (sdc.get("summary") or {}).items() if v}
    for line in str(out.summary).split("\n"):
        name = line.strip().split(":")[0]
        if name.endswith("Check"):
            reasons.add(name)
    return str(out.status), reasons


def _acro_table(frame, by, value, stat, policy):
    """The table computed by ACRO (suppressed cells as NaN), its status and check names."""
    session = _acro(policy)
    # ACRO 1.0.2 misaligns groups of a filtered frame's index, and of integer groups crossed
    # with a text column: give it a fresh index and every group column as text, then map the
    # labels back to their values
    frame = frame.reset_index(drop=True)
    back = {b: {str(v): v for v in frame[b].unique()} for b in by}
    text = {b: frame[b].map(str).rename(b) for b in by}
    index = [text[b] for b in (by[:-1] if len(by) > 1 else by)]
    col = (
        [text[by[-1]]]
        if len(by) > 1
        else [pd.Series(["__all__"] * len(frame), name="__all__", index=frame.index)]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if stat == "count":
                table = session.crosstab(index, col)
            else:
                table = session.crosstab(index, col, values=frame[value], aggfunc=stat)
        except Exception:  # noqa: BLE001 - an ACRO failure holds the output
            return None, "fail", set()
    status, reasons = _acro_status(session)
    table = table.astype(float)

    def restore(labels, names):
        out = []
        for key in labels:
            key = key if isinstance(key, tuple) else (key,)
            vals = tuple(
                back[n].get(k, k) if n in back else k for n, k in zip(names, key, strict=False)
            )
            out.append(vals if len(vals) > 1 else vals[0])
        return pd.MultiIndex.from_tuples(out) if out and isinstance(out[0], tuple) else out

    table.index = restore(table.index, list(table.index.names))
    table.columns = restore(table.columns, list(table.columns.names))
    return table, status, reasons


def _acro_regression(frame, y, x, family, policy):
    import statsmodels.api as sm

    session = _acro(policy)
    exog = sm.add_constant(frame[x].astype(float), has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = session.ols if family == "ols" else session.logit
            res = fit(frame[y].astype(float), exog)
        except Exception:  # noqa: BLE001 - singular designs and the like
            return None, "fail"
    status, _ = _acro_status(session)
    return res, status


def _worst_case_auc(proba_train: np.ndarray, proba_test: np.ndarray) -> float | None:
    """Mean AUC of SACRO-ML's worst-case membership-inference attack."""
    from sacroml.attacks.worst_case_attack import WorstCaseAttack

    logging.getLogger("sacroml").setLevel(logging.ERROR)
    attack = WorstCaseAttack(write_report=False, n_reps=3, n_dummy_reps=0, output_dir="/tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attack.attack_from_preds(proba_train, proba_test)
    aucs = [m.get("AUC") for m in attack.attack_metrics if m.get("AUC") is not None]
    return float(np.mean(aucs)) if aucs else None
