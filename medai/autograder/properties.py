"""Properties of ``property`` tasks, by name: a predicate or score on what the trainee passes.

``check("task", value, *extra)`` records ``[value, *extra]`` as plain data; the trusted scorer
calls the task's property on that list with the task's ``params`` and gets ``(fraction,
message)``. The same function gives the public check while the trainee works. The values come
from an untrusted kernel as plain data (lists, dicts, numbers, text, numpy arrays), so every
property checks their types itself and answers a forged or malformed value with 0 and a reason.

================  ==================================================  ===========================
property          check(...) arguments                                params
================  ==================================================  ===========================
``disjoint``      two or more collections of ids                      ``min_size`` (default 1)
``contains_all``  a list of names                                     ``expected``, ``max_items``,
                                                                      ``ignore_case`` (true)
``k_anonymous``   records (list of dicts / DataFrame), QI columns     ``k``, ``quasi_identifiers``,
                                                                      ``min_rows`` (default 1)
``within``        a number                                            ``target``, ``tol`` and/or
                                                                      ``rel_tol``
================  ==================================================  ===========================
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["PROPERTIES", "Property", "evaluate", "to_plain_args"]

MAX_ITEMS = 1_000_000


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PropertyFailed(ValueError):
    """A value of the wrong kind for the property (scored 0 with this message)."""


def _scalar(x: Any) -> bool:
    return isinstance(x, str | int | float | bool) or x is None


def _id_list(x: Any, what: str) -> list[str]:
    """A collection of ids as text; lists of scalars or 1-D numeric arrays only."""
    if isinstance(x, np.ndarray):
        if x.ndim != 1:
            raise PropertyFailed(f"{what} must be one-dimensional, got shape {x.shape}")
        x = x.tolist()
    if isinstance(x, dict) and set(x) == {"index", "values"}:  # a decoded numeric Series
        x = np.asarray(x["values"]).tolist()
    if not isinstance(x, list):
        raise PropertyFailed(f"{what} must be a list of ids, got {type(x).__name__}")
    if len(x) > MAX_ITEMS:
        raise PropertyFailed(f"{what} has more than {MAX_ITEMS} items")
    if not all(_scalar(v) and not isinstance(v, bool) for v in x):
        raise PropertyFailed(f"{what} must hold ids (text or numbers), not nested values")
    return [_key(v) for v in x]


def _key(v: Any) -> str:
    """Ids compare as text; an integral float (1.0 from a float column) equals the int 1."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


# --------------------------------------------------------------------------- disjoint


class DisjointParams(_Params):
    min_size: int = Field(1, ge=0, description="Each collection must hold at least this many ids.")


def disjoint(values: list, p: DisjointParams) -> tuple[float, str]:
    if len(values) < 2:
        return 0.0, "pass at least two collections of ids, e.g. check(task, train_ids, valid_ids)"
    sets = [set(_id_list(v, f"argument {i + 1}")) for i, v in enumerate(values)]
    small = [i + 1 for i, s in enumerate(sets) if len(s) < p.min_size]
    if small:
        return 0.0, f"argument(s) {small} hold fewer than {p.min_size} distinct ids"
    shared: set[str] = set()
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            shared |= sets[i] & sets[j]
    if shared:
        return 0.0, f"{len(shared)} id(s) appear in more than one collection (leakage)"
    sizes = ", ".join(str(len(s)) for s in sets)
    return 1.0, f"no id in more than one collection (sizes {sizes})"


# --------------------------------------------------------------------------- contains_all


class ContainsAllParams(_Params):
    expected: list[str] = Field(min_length=1)
    max_items: int | None = Field(None, ge=1, description="Longer lists score 0.")
    ignore_case: bool = True


def contains_all(values: list, p: ContainsAllParams) -> tuple[float, str]:
    if len(values) != 1:
        return 0.0, "pass one list of names, e.g. check(task, names)"
    names = values[0]
    if isinstance(names, str) or not isinstance(names, list):
        return 0.0, f"expected a list of names, got {type(names).__name__}"
    if not all(isinstance(n, str) for n in names):
        return 0.0, "every item of the list must be text (a name)"
    if p.max_items is not None and len(names) > p.max_items:
        return 0.0, f"the list has {len(names)} names; at most {p.max_items} are allowed"

    def norm(s: str) -> str:
        return s.strip().casefold() if p.ignore_case else s.strip()

    given = {norm(n) for n in names}
    found = sum(norm(e) in given for e in p.expected)
    return found / len(p.expected), f"{found} of {len(p.expected)} expected names in the list"


# --------------------------------------------------------------------------- k_anonymous


class KAnonymousParams(_Params):
    k: int = Field(ge=2)
    quasi_identifiers: list[str] | None = Field(
        None, min_length=1, description="If given, graded on these columns whatever is passed."
    )
    min_rows: int = Field(1, ge=0, description="Fewer released rows score 0 (no suppress-all).")


def _records(x: Any) -> list[dict]:
    if isinstance(x, dict):  # {column: [values]} as well as a list of row dicts
        cols = list(x)
        if not all(isinstance(x[c], list) for c in cols):
            raise PropertyFailed("records given as a dict must map column names to lists")
        n = {len(x[c]) for c in cols}
        if len(n) > 1:
            raise PropertyFailed("the columns of the records differ in length")
        return [{c: x[c][i] for c in cols} for i in range(n.pop() if n else 0)]
    if not isinstance(x, list) or not all(isinstance(r, dict) for r in x):
        raise PropertyFailed(
            f"records must be a DataFrame or a list of dicts, got {type(x).__name__}"
        )
    return x


def k_anonymous(values: list, p: KAnonymousParams) -> tuple[float, str]:
    if not values:
        return 0.0, "pass the released records, e.g. check(task, released, QUASI_IDENTIFIERS)"
    rows = _records(values[0])
    qi = p.quasi_identifiers
    if len(values) > 1:
        given = values[1]
        if not (isinstance(given, list) and given and all(isinstance(c, str) for c in given)):
            return 0.0, "the quasi-identifiers must be a non-empty list of column names"
        if qi is not None and not set(qi) <= set(given):
            return 0.0, f"the quasi-identifiers must include {sorted(set(qi) - set(given))}"
        qi = qi or given
    if not qi:
        return 0.0, "name the quasi-identifier columns: check(task, released, columns)"
    if len(rows) < max(p.min_rows, 1):
        return 0.0, f"only {len(rows)} rows released; at least {max(p.min_rows, 1)} are needed"
    missing = sorted({c for r in rows for c in qi if c not in r})
    if missing:
        return 0.0, f"the records lack quasi-identifier column(s) {missing}"
    bad = [c for r in rows for c in qi if not _scalar(r[c])]
    if bad:
        return 0.0, "quasi-identifier values must be text, numbers or missing"
    classes = Counter(
        tuple(
            "<missing>" if (v is None or (isinstance(v, float) and math.isnan(v))) else _key(v)
            for v in (r[c] for c in qi)
        )
        for r in rows
    )
    small = [n for n in classes.values() if n < p.k]
    smallest = min(classes.values())
    if small:
        return 0.0, (
            f"{len(small)} of {len(classes)} groups on {qi} have fewer than k={p.k} rows "
            f"(smallest: {smallest}); {sum(small)} rows are re-identifiable"
        )
    return (
        1.0,
        f"{len(rows)} rows in {len(classes)} groups, each of at least k={p.k} (smallest {smallest})",
    )


# --------------------------------------------------------------------------- within


class WithinParams(_Params):
    target: float
    tol: float | None = Field(None, ge=0, description="Absolute tolerance.")
    rel_tol: float | None = Field(None, ge=0, description="Tolerance relative to |target|.")

    @model_validator(mode="after")
    def _some(self) -> WithinParams:
        if self.tol is None and self.rel_tol is None:
            raise ValueError("give `tol` (absolute) or `rel_tol` (relative), or both")
        return self


def within(values: list, p: WithinParams) -> tuple[float, str]:
    if len(values) != 1:
        return 0.0, "pass one number, e.g. check(task, value)"
    x = values[0]
    if isinstance(x, np.ndarray) and x.size == 1:
        x = x.reshape(()).item()
    if isinstance(x, bool) or not isinstance(x, int | float):
        return 0.0, f"expected a number, got {type(x).__name__}"
    if not math.isfinite(x):
        return 0.0, "the value is not finite"
    allowed = max(p.tol or 0.0, (p.rel_tol or 0.0) * abs(p.target))
    err = abs(float(x) - p.target)
    if err <= allowed:
        return 1.0, f"{x:.4g} is within {allowed:.3g} of the target"
    return 0.0, f"{x:.4g} is {err:.3g} away from the target; at most {allowed:.3g} is accepted"


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Property:
    fn: Callable[[list, Any], tuple[float, str]]
    params: type[_Params]


PROPERTIES: dict[str, Property] = {
    "disjoint": Property(disjoint, DisjointParams),
    "contains_all": Property(contains_all, ContainsAllParams),
    "k_anonymous": Property(k_anonymous, KAnonymousParams),
    "within": Property(within, WithinParams),
}


def evaluate(name: str, values: Any, params: dict) -> tuple[float, str]:
    """Score ``values`` (the decoded ``[value, *extra]``) with property ``name``.

    Never raises on bad values: a malformed or forged value scores 0 with the reason.
    """
    prop = PROPERTIES[name]
    p = prop.params.model_validate(params)
    if not isinstance(values, list):
        return 0.0, "malformed record: expected the list of check() arguments"
    try:
        frac, msg = prop.fn(values, p)
    except PropertyFailed as exc:
        return 0.0, str(exc)
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        return 0.0, f"could not evaluate: {type(exc).__name__}: {str(exc)[:200]}"
    return float(min(1.0, max(0.0, frac))), msg


def to_plain_args(values: tuple) -> list:
    """Kernel side: DataFrames to lists of row dicts, Series/Index/sets to lists, numpy scalars
    to Python ones, so that :func:`medai.autograder.plain.encode` can carry them."""

    def conv(x: Any, depth: int = 0) -> Any:
        if depth > 6:
            return x
        try:
            import pandas as pd

            if isinstance(x, pd.DataFrame):
                return [
                    {str(k): conv(v, depth + 1) for k, v in r.items()} for r in x.to_dict("records")
                ]
            if isinstance(x, pd.Series | pd.Index):
                return [conv(v, depth + 1) for v in x.tolist()]
            if x is pd.NaT:
                return None
            if isinstance(x, pd.Timestamp):
                return x.isoformat()
        except ImportError:  # pragma: no cover
            pass
        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray) and x.dtype.kind not in "biuf":
            return [conv(v, depth + 1) for v in x.tolist()]
        if isinstance(x, set | frozenset):
            return sorted((conv(v, depth + 1) for v in x), key=str)
        if isinstance(x, list | tuple):
            return [conv(v, depth + 1) for v in x]
        if isinstance(x, dict):
            return {str(k): conv(v, depth + 1) for k, v in x.items()}
        return x

    return [conv(v) for v in values]
