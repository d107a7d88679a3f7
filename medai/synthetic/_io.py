"""Byte-reproducible writers shared by the media generators.

``np.savez`` stamps every member of its zip archive with the current time, so two runs with the same
seed would differ in bytes. :func:`save_npz` writes the same ``.npz`` layout (one ``.npy`` member per
array, readable by ``np.load``) with a fixed timestamp, so the manifest only changes when the data do.
"""

from __future__ import annotations

import csv
import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can carry


def save_npz(path: Path, arrays: Mapping[str, np.ndarray], *, compress: bool = True) -> None:
    """Write ``arrays`` to ``path`` as an ``.npz`` archive whose bytes depend only on the data."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for key in sorted(arrays):
            arr = np.asarray(arrays[key])
            if arr.dtype == object:
                raise TypeError(
                    f"array '{key}' for {path.name} has dtype object; use a fixed dtype"
                )
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_DATE)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, arr, allow_pickle=False)


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object per line, UTF-8, non-ASCII kept readable (Chinese text stays Chinese)."""
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False, separators=(", ", ": ")) + "\n")


def write_json(path: Path, obj: Any) -> None:
    """Pretty JSON with sorted keys and a final newline."""
    path.write_text(
        json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Plain CSV with ``\\n`` line ends (the csv module defaults to ``\\r\\n``)."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
