"""Plain values between the sandbox and the trusted scorer: JSON with arrays as ``.npy`` bytes.

:func:`encode` runs inside the sandbox (trainee code may have replaced it: its output is data
from an untrusted source). :func:`decode` runs in the trusted process: it accepts only the tagged
shapes below, never unpickles (``np.load(allow_pickle=False)``) and bounds size and depth, so a
malformed or hostile record raises :class:`PlainError` and the task scores 0.

Encoded forms (``t`` is the tag)::

    {"t": "null"} | {"t": "bool", "v": b} | {"t": "int", "v": i} | {"t": "float", "v": x|"nan"|"inf"|"-inf"}
    {"t": "str", "v": s} | {"t": "list", "v": [...]} | {"t": "dict", "v": {str: ...}}
    {"t": "ndarray", "npy": base64}           numeric or bool arrays only
    {"t": "series", "index": [str], "npy": base64}
    {"t": "error", "v": message}              the trainee's function raised
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np

MAX_DEPTH = 8
MAX_ITEMS = 100_000
MAX_STR = 100_000
MAX_ARRAY_BYTES = 64 * 1024 * 1024
_ALLOWED_KINDS = "biuf"  # bool, signed, unsigned, float


class PlainError(ValueError):
    """A value that cannot be carried as plain data, or a malformed record."""


def _npy(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _float(x: float) -> float | str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def encode(value: Any, _depth: int = 0) -> dict:
    """Encode ``value`` (numbers, strings, lists, dicts, numpy arrays, pandas Series)."""
    if _depth > MAX_DEPTH:
        raise PlainError("value is nested too deeply")
    if value is None:
        return {"t": "null"}
    if isinstance(value, bool | np.bool_):
        return {"t": "bool", "v": bool(value)}
    if isinstance(value, int | np.integer):
        return {"t": "int", "v": int(value)}
    if isinstance(value, float | np.floating):
        return {"t": "float", "v": _float(float(value))}
    if isinstance(value, CaseError):
        return {"t": "error", "v": str(value)[:2000]}
    if isinstance(value, str):
        return {"t": "str", "v": value[:MAX_STR]}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _ALLOWED_KINDS:
            raise PlainError(f"arrays must be numeric or boolean, not dtype {value.dtype}")
        return {"t": "ndarray", "npy": _npy(value)}
    try:  # pandas is optional here
        import pandas as pd

        if isinstance(value, pd.Series):
            arr = value.to_numpy()
            if arr.dtype.kind not in _ALLOWED_KINDS:
                arr = pd.to_numeric(value, errors="raise").to_numpy(dtype=float)
            return {"t": "series", "index": [str(i) for i in value.index], "npy": _npy(arr)}
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, list | tuple):
        if len(value) > MAX_ITEMS:
            raise PlainError(f"list has {len(value)} items; the limit is {MAX_ITEMS}")
        return {"t": "list", "v": [encode(v, _depth + 1) for v in value]}
    if isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            raise PlainError(f"dict has {len(value)} items; the limit is {MAX_ITEMS}")
        return {"t": "dict", "v": {str(k): encode(v, _depth + 1) for k, v in value.items()}}
    raise PlainError(f"cannot record a value of type {type(value).__name__}")


def _load_npy(text: Any) -> np.ndarray:
    if not isinstance(text, str) or len(text) > MAX_ARRAY_BYTES * 4 // 3 + 4:
        raise PlainError("array payload is missing or too large")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, UnicodeEncodeError) as exc:
        raise PlainError(f"array payload is not a valid .npy file: {exc}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in _ALLOWED_KINDS:
        raise PlainError("array payload must hold a numeric or boolean array")
    return arr


def decode(obj: Any, _depth: int = 0) -> Any:
    """Decode a record made by :func:`encode`; raise :class:`PlainError` on anything else.

    Series come back as ``{"index": [...], "values": ndarray}``, errors as :class:`CaseError`.
    """
    if _depth > MAX_DEPTH:
        raise PlainError("value is nested too deeply")
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        raise PlainError("record is not a tagged plain value")
    t = obj["t"]
    v = obj.get("v")
    if t == "null":
        return None
    if t == "bool" and type(v) is bool:
        return v
    if t == "int" and type(v) is int:
        return v
    if t == "float":
        if type(v) in (float, int):
            return float(v)
        if v in ("nan", "inf", "-inf"):
            return float(v)
    if t == "str" and isinstance(v, str) and len(v) <= MAX_STR:
        return v
    if t == "error" and isinstance(v, str):
        return CaseError(v[:2000])
    if t == "list" and isinstance(v, list) and len(v) <= MAX_ITEMS:
        return [decode(x, _depth + 1) for x in v]
    if t == "dict" and isinstance(v, dict) and len(v) <= MAX_ITEMS:
        return {str(k): decode(x, _depth + 1) for k, x in v.items()}
    if t == "ndarray":
        return _load_npy(obj.get("npy"))
    if t == "series":
        index = obj.get("index")
        if not isinstance(index, list) or not all(isinstance(i, str) for i in index):
            raise PlainError("series index must be a list of strings")
        values = _load_npy(obj.get("npy"))
        if values.ndim != 1 or len(values) != len(index):
            raise PlainError("series values and index differ in length")
        return {"index": index, "values": values}
    raise PlainError(f"malformed plain value with tag {t!r}")


class CaseError(str):
    """The trainee's function raised on one grader-supplied input (the message, as text)."""
