"""Data of ``model`` tasks: loading a split's inputs and labels, and validating predictions.

Used on both sides of the sandbox wall. In the kernel (trainee feedback; grading mode) only
*public* sources are ever loaded (:func:`load_source` refuses ``hidden: true`` unless the caller
passes the hidden folder, which only the trusted scorer has). :func:`validate_output` turns what
a predict function returned into one canonical form and rejects anything malformed; the trusted
scorer runs it again on the decoded record, since nothing from the kernel is trusted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medai.autograder.tasks import DataSource, OutputSpec, Split

__all__ = [
    "Loaded",
    "OutputError",
    "align",
    "load_groups",
    "load_source",
    "to_plain_output",
    "validate_output",
]

MAX_SPANS_PER_CASE = 10_000
MAX_IDS_PER_ANSWER = 100
MAX_ANSWER_CHARS = 2_000


class OutputError(ValueError):
    """Predictions of the wrong type or shape, or with invalid values; the message says which."""


@dataclass
class Loaded:
    value: Any  # ndarray | DataFrame | list
    ids: list[str] | None  # ids as text, in order, when the source has them (aligns labels)


def _where(df: Any, where: dict, what: str) -> Any:
    for col, want in where.items():
        if col not in df.columns:
            raise FileNotFoundError(f"{what}: no column '{col}' to filter on (where:)")
        df = df[df[col].isin(want) if isinstance(want, list) else df[col] == want]
    return df


def _table(folder: Path, name: str) -> Any:
    import pandas as pd

    path = folder / name
    if path.exists():
        return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    twin = path.with_suffix(".parquet" if path.suffix == ".csv" else ".csv")
    if twin.exists():  # datasets are written as CSV or Parquet; accept either
        return pd.read_parquet(twin) if twin.suffix == ".parquet" else pd.read_csv(twin)
    raise FileNotFoundError(f"no file {name} (or {twin.name}) in {folder}")


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise FileNotFoundError(f"no file {path.name} in {path.parent}")
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_source(src: DataSource, public: Path, hidden: Path | None = None) -> Loaded:
    """Load one source from the dataset's ``public`` folder (or ``hidden``, scorer only).

    npz -> the ``key`` array (ids from an ``id`` array in the same file, if any; ``where``
    keeps the rows whose other arrays match, e.g. ``{fold: 0}``); csv -> a
    DataFrame, or with ``column``/``columns`` an array ``(n,)``/``(n, k)``; jsonl -> a list of
    dicts, or with ``field`` the list of that field; ids -> the list of ids.
    """
    if src.hidden:
        if hidden is None:
            raise PermissionError("hidden files are read by the trusted scorer only")
        folder = hidden
    else:
        folder = public
    if src.npz is not None:
        path = folder / src.npz
        if not path.exists():
            raise FileNotFoundError(f"no file {src.npz} in {folder}")
        with np.load(path, allow_pickle=False) as z:
            if src.key not in z.files:
                raise KeyError(f"{src.npz} has no array '{src.key}' (it has {sorted(z.files)})")
            arr = z[src.key]
            keep = np.ones(len(arr), dtype=bool)
            for name, want in src.where.items():  # rows whose array `name` matches
                if name not in z.files:
                    raise KeyError(f"{src.npz} has no array '{name}' to filter on (where:)")
                col = z[name]
                if col.shape != (len(arr),):
                    raise ValueError(f"{src.npz}: '{name}' is not one value per row of '{src.key}'")
                keep &= np.isin(col, want if isinstance(want, list) else [want])
            ids = [str(i) for i in z["id"][keep].tolist()] if "id" in z.files else None
        return Loaded(arr[keep], ids)
    if src.ids is not None:
        df = _where(_table(folder, src.ids.csv), src.ids.where, src.ids.csv)
        if src.ids.column not in df.columns:
            raise KeyError(f"{src.ids.csv} has no column '{src.ids.column}'")
        values = df[src.ids.column].tolist()
        return Loaded(values, [str(v) for v in values])
    if src.csv is not None:
        df = _where(_table(folder, src.csv), src.where, src.csv)
        ids = None
        if src.id_column is not None:
            if src.id_column not in df.columns:
                raise KeyError(f"{src.csv} has no id column '{src.id_column}'")
            ids = [str(v) for v in df[src.id_column].tolist()]
        cols = [src.column] if src.column else src.columns
        if cols:
            missing = [c for c in cols if c not in df.columns]
            if missing:
                raise KeyError(f"{src.csv} has no column(s) {missing}")
            arr = df[cols].to_numpy()
            return Loaded(arr[:, 0] if src.column else arr, ids)
        df = df.drop(columns=[c for c in src.drop if c in df.columns]).reset_index(drop=True)
        return Loaded(df, ids)
    records = _jsonl(folder / str(src.jsonl))
    for key, want in src.where.items():
        records = [
            r
            for r in records
            if (r.get(key) in want if isinstance(want, list) else r.get(key) == want)
        ]
    ids = None
    if records and all(src.id_field in r for r in records):
        ids = [str(r[src.id_field]) for r in records]
    if src.field is not None:
        missing = sum(src.field not in r for r in records)
        if missing:
            raise KeyError(f"{missing} record(s) of {src.jsonl} lack the field '{src.field}'")
        return Loaded([r[src.field] for r in records], ids)
    if src.drop:
        records = [{k: v for k, v in r.items() if k not in src.drop} for r in records]
    return Loaded(records, ids)


def _n(value: Any) -> int:
    return len(value)


def align(inputs: Loaded, labels: Loaded, where: str) -> Any:
    """The labels in the order of the inputs: by id when both sides have ids, else by position."""
    n = _n(inputs.value)
    lab = labels.value
    if inputs.ids is not None and labels.ids is not None:
        pos = {i: k for k, i in enumerate(labels.ids)}
        missing = [i for i in inputs.ids if i not in pos]
        if missing:
            raise KeyError(
                f"{where}: {len(missing)} of {n} inputs have no label (e.g. {missing[0]})"
            )
        order = [pos[i] for i in inputs.ids]
        return [lab[k] for k in order] if isinstance(lab, list) else np.asarray(lab)[order]
    if _n(lab) != n:
        raise ValueError(f"{where}: {n} inputs but {_n(lab)} labels, and no ids to align them")
    return lab


def load_groups(split: Split, inputs: Loaded, public: Path) -> np.ndarray | None:
    """The group of each input of ``split`` (text), aligned to ``inputs`` like the labels and
    merged by ``relabel``; None when the split names no groups. Groups are public."""
    if split.groups is None:
        return None
    groups = align(inputs, load_source(split.groups, public), "groups")
    values = [str(v) for v in np.asarray(groups, dtype=object).tolist()]
    return np.array([split.relabel.get(v, v) for v in values])


# --------------------------------------------------------------------------- predictions


def to_plain_output(pred: Any, output: OutputSpec, ids: list[str] | None = None) -> Any:
    """Kernel side: torch tensors and pandas objects to numpy (pandas reordered to ``ids`` when
    indexed by them), lists of numbers to arrays, ``(start, end[, label])`` tuples and numpy
    scalars in span lists to dicts and ints. Validation comes after."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover
        pd = None
    if all(hasattr(pred, a) for a in ("detach", "cpu", "numpy")):  # a torch tensor
        pred = pred.detach().cpu().numpy()
    if pd is not None and isinstance(pred, pd.Series | pd.DataFrame):
        index = [str(i) for i in pred.index]
        if ids is not None and sorted(index) == sorted(ids) and index != ids:
            pred = pred.copy()
            pred.index = index
            pred = pred.loc[ids]
        return pred.to_numpy()
    if output.type == "spans" and isinstance(pred, list | tuple):
        out = []
        for note in pred:
            if not isinstance(note, list | tuple):
                return pred  # validation says what is wrong
            spans = []
            for s in note:
                if isinstance(s, dict):
                    spans.append(
                        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in s.items()}
                    )
                elif isinstance(s, list | tuple) and len(s) in (2, 3):
                    d = {"start": s[0], "end": s[1]}
                    if len(s) == 3:
                        d["label"] = s[2]
                    spans.append(
                        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in d.items()}
                    )
                else:
                    spans.append(s)
            out.append(spans)
        return out
    if output.type == "answers" and isinstance(pred, list | tuple):
        return [_plain_answer(a) for a in pred]
    if isinstance(pred, list | tuple) and output.type != "spans":
        try:  # numbers only: text or objects keep their dtype and fail validation
            return np.asarray(pred)
        except (TypeError, ValueError):
            return pred
    return pred


def _plain_answer(a: Any) -> Any:
    """numpy strings to str and tuples to lists inside one answer dict (validation follows)."""
    if not isinstance(a, dict):
        return a

    def conv(v: Any) -> Any:
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, list | tuple | np.ndarray):
            return [conv(x) for x in list(v)]
        return v

    return {str(k): conv(v) for k, v in a.items()}


def _answers(pred: Any, n: int) -> list[dict]:
    if not isinstance(pred, list):
        raise OutputError(
            f"expected a list of {n} answers (one dict per question), got {type(pred).__name__}"
        )
    if len(pred) != n:
        raise OutputError(f"expected {n} answers (one per question), got {len(pred)}")
    out = []
    for i, a in enumerate(pred):
        if not isinstance(a, dict):
            raise OutputError(f"answer {i} is a {type(a).__name__}, not a dict")
        missing = [k for k in ("answer", "citations", "retrieved") if k not in a]
        if missing:
            raise OutputError(f"answer {i} lacks {missing}: give answer, citations and retrieved")
        text = a["answer"]
        if text is not None and not isinstance(text, str):
            raise OutputError(f"answer {i}: 'answer' must be text, or None to abstain")
        if isinstance(text, str) and len(text) > MAX_ANSWER_CHARS:
            raise OutputError(f"answer {i} is longer than {MAX_ANSWER_CHARS} characters")
        for key in ("citations", "retrieved"):
            ids = a[key]
            if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
                raise OutputError(f"answer {i}: '{key}' must be a list of passage ids (text)")
            if len(ids) > MAX_IDS_PER_ANSWER:
                raise OutputError(f"answer {i}: more than {MAX_IDS_PER_ANSWER} {key}")
        out.append(
            {"answer": text, "citations": list(a["citations"]), "retrieved": list(a["retrieved"])}
        )
    return out


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _spans(pred: Any, n: int) -> list[list[dict]]:
    if not isinstance(pred, list):
        raise OutputError(
            f"expected a list of {n} span lists (one per input), got {type(pred).__name__}"
        )
    if len(pred) != n:
        raise OutputError(f"expected {n} span lists (one per input), got {len(pred)}")
    out = []
    for i, note in enumerate(pred):
        if not isinstance(note, list):
            raise OutputError(f"item {i} is a {type(note).__name__}, not a list of spans")
        if len(note) > MAX_SPANS_PER_CASE:
            raise OutputError(f"item {i} has {len(note)} spans; the limit is {MAX_SPANS_PER_CASE}")
        spans = []
        for s in note:
            if not (isinstance(s, dict) and _int(s.get("start")) and _int(s.get("end"))):
                raise OutputError(
                    f"item {i}: each span must be a dict with integer 'start' and 'end', got {str(s)[:80]}"
                )
            if not 0 <= s["start"] <= s["end"] <= 10_000_000:
                raise OutputError(f"item {i}: span {s['start']}..{s['end']} is not a valid range")
            label = s.get("label")
            if label is not None and not isinstance(label, str):
                raise OutputError(f"item {i}: a span's 'label' must be text")
            spans.append({"start": s["start"], "end": s["end"], "label": label})
        out.append(spans)
    return out


def validate_output(pred: Any, output: OutputSpec, n: int, mask_shape: tuple | None = None) -> Any:
    """Check predictions against ``output`` for ``n`` inputs; return them in canonical form.

    proba -> float ``(n, k)`` (a ``(n,)`` vector is P(class 1) when ``classes: 2``), rows in
    [0, 1] summing to 1; score/risk -> finite float ``(n,)``; label -> int ``(n,)`` in
    ``[0, classes)``; mask -> bool ``(n, H, W)`` from 0/1 values; spans -> ``n`` lists of
    ``{start, end, label}``; answers -> ``n`` dicts ``{answer, citations, retrieved}``. Raises :class:`OutputError` saying what is wrong.
    """
    if output.type == "spans":
        return _spans(pred, n)
    if output.type == "answers":
        return _answers(pred, n)
    if not isinstance(pred, np.ndarray):
        raise OutputError(
            f"expected a numpy array for a {output.type} output, got {type(pred).__name__}"
        )
    if pred.dtype.kind not in "biuf":
        raise OutputError(f"expected numbers, got an array of dtype {pred.dtype}")
    if output.type == "mask":
        if pred.ndim != 3 or len(pred) != n:
            raise OutputError(f"expected masks of shape (n={n}, H, W), got {pred.shape}")
        if mask_shape is not None and pred.shape[1:] != tuple(mask_shape):
            raise OutputError(f"expected masks of {tuple(mask_shape)} pixels, got {pred.shape[1:]}")
        if pred.dtype.kind != "b" and not np.isin(pred, (0, 1)).all():
            raise OutputError("masks must be 0/1 or bool: threshold probabilities (e.g. p > 0.5)")
        return pred.astype(bool)
    arr = pred.astype(float)
    if not np.all(np.isfinite(arr)):
        raise OutputError("predictions contain NaN or infinite values")
    if output.type == "proba":
        k = int(output.classes or 2)
        if arr.ndim == 1 and k == 2 and len(arr) == n:
            arr = np.stack([1.0 - arr, arr], axis=1)
        if arr.shape != (n, k):
            raise OutputError(f"expected probabilities of shape ({n}, {k}), got {pred.shape}")
        if arr.min() < 0 or arr.max() > 1:
            raise OutputError("probabilities must lie in [0, 1]")
        if not np.allclose(arr.sum(axis=1), 1.0, atol=1e-3):
            raise OutputError("each row of probabilities must sum to 1")
        return arr
    if arr.shape != (n,):
        raise OutputError(f"expected one {output.type} per input, shape ({n},), got {pred.shape}")
    if output.type == "label":
        if not np.all(arr == np.round(arr)):
            raise OutputError("labels must be whole numbers (class indices)")
        if output.classes is not None and (arr.min() < 0 or arr.max() >= output.classes):
            raise OutputError(f"labels must lie in 0..{output.classes - 1}")
        return arr.astype(int)
    return arr
