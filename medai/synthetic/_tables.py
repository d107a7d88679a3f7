"""Helpers for the tabular generators: chunked, deterministic table writing and pseudonyms.

Tables are written one chunk at a time through Arrow's streaming writers, so memory stays bounded
whatever the number of rows. Both formats are byte-for-byte reproducible for the same input:

- CSV via :class:`pyarrow.csv.CSVWriter` (floats are written in their shortest round-trip form,
  and every generator rounds measured values to a fixed number of decimals first);
- Parquet via :class:`pyarrow.parquet.ParquetWriter` (no timestamps are stored; the footer only
  records the writer's version).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

EXTENSIONS = {"csv": ".csv", "parquet": ".parquet"}
TABULAR_FORMATS: tuple[str, ...] = ("csv", "parquet")

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_MASK48 = np.uint64((1 << 48) - 1)


def _mix48(x: np.ndarray, key: int) -> np.ndarray:
    """A keyed bijection of 48-bit integers (xor-shift / odd-multiply rounds).

    Written by hand: it only has to scramble row numbers into pseudonyms that reveal neither the
    row order nor the seed, and be invertible so pseudonyms never collide. Each step (adding a
    constant, xor with a right shift of itself, multiplying by an odd number, all modulo 2**48)
    is a bijection, so the composition is one too.
    """
    k1 = np.uint64(key & ((1 << 48) - 1))
    k2 = np.uint64((key >> 16) & ((1 << 48) - 1))
    x = (x.astype(np.uint64) + k1) & _MASK48
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(23)
        x = (x * np.uint64(0x9E3779B97F4B)) & _MASK48
        x ^= x >> np.uint64(21)
        x = (x * np.uint64(0xBF58476D1CE5)) & _MASK48
        x ^= x >> np.uint64(24)
        x = (x * np.uint64(0x94D049BB1335)) & _MASK48
        x ^= x >> np.uint64(19)
    return x ^ k2


def pseudonyms(prefix: str, index: np.ndarray, key: int) -> pa.StringArray:
    """Fixed-width pseudonymous IDs (``prefix`` + 12 hex digits) for row numbers ``index``.

    Distinct indices give distinct IDs; the mapping depends on ``key`` (derived from the seed).
    """
    pre = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    x = _mix48(np.asarray(index), key)
    shifts = np.arange(44, -1, -4, dtype=np.uint64)
    nib = ((x[:, None] >> shifts[None, :]) & np.uint64(0xF)).astype(np.uint8)
    width = len(pre) + 12
    buf = np.empty((len(x), width), dtype=np.uint8)
    buf[:, : len(pre)] = pre
    buf[:, len(pre) :] = _HEX[nib]
    offsets = np.arange(0, len(x) * width + 1, width, dtype=np.int32)
    return pa.StringArray.from_buffers(len(x), pa.py_buffer(offsets), pa.py_buffer(buf.tobytes()))


def merge_rows(
    public: Mapping[str, pa.Array],
    public_owner: np.ndarray,
    keep: np.ndarray,
    hidden: Mapping[str, pa.Array],
    hidden_owner: np.ndarray,
) -> dict[str, pa.Array]:
    """One table from two draws of the same rows: the rows of ``public`` whose owner (a patient's
    position, ``public_owner``) is marked in ``keep``, and every row of ``hidden`` (owners
    ``hidden_owner``), ordered by owner; each owner's rows keep their order."""
    rows = np.flatnonzero(keep[public_owner])
    owner = np.concatenate([public_owner[rows], hidden_owner])
    order = pa.array(np.argsort(owner, kind="stable"))
    take = pa.array(rows)
    return {k: pa.concat_arrays([public[k].take(take), hidden[k]]).take(order) for k in public}


def categorical(codes: np.ndarray, labels: list[str] | tuple[str, ...]) -> pa.Array:
    """Strings from integer ``codes`` into ``labels``; a negative code means missing."""
    codes = np.asarray(codes)
    mask = codes < 0
    idx = pa.array(np.where(mask, 0, codes).astype(np.int32), mask=mask if mask.any() else None)
    return pa.DictionaryArray.from_arrays(idx, pa.array(list(labels), pa.string())).cast(
        pa.string()
    )


def floats(values: np.ndarray, decimals: int) -> pa.Array:
    """Doubles rounded to ``decimals``; NaN becomes missing (an empty CSV cell)."""
    v = np.round(np.asarray(values, dtype=np.float64), decimals)
    mask = np.isnan(v)
    return pa.array(v, type=pa.float64(), mask=mask if mask.any() else None)


def ints(values: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """Integers, with an optional boolean ``missing`` mask."""
    v = np.asarray(values, dtype=np.int64)
    return pa.array(
        v, type=pa.int64(), mask=missing if missing is not None and missing.any() else None
    )


def dates(days_since_epoch: np.ndarray) -> pa.Array:
    """ISO calendar dates from day numbers (days since 1970-01-01)."""
    return pa.array(np.asarray(days_since_epoch, dtype=np.int32), type=pa.date32())


def day_number(iso: str) -> int:
    """Day number (days since 1970-01-01) of an ISO date."""
    return int(np.datetime64(iso, "D").astype(np.int64))


class TableWriter:
    """Append-only writer of one table (CSV or Parquet), fed one chunk of columns at a time."""

    def __init__(self, folder: Path, name: str, fmt: str, schema: pa.Schema) -> None:
        if fmt not in EXTENSIONS:
            raise ValueError(f"tabular format must be one of {', '.join(EXTENSIONS)}; got {fmt}")
        self.path = Path(folder) / f"{name}{EXTENSIONS[fmt]}"
        self.schema = schema
        self.fmt = fmt
        self.rows = 0
        if fmt == "csv":
            self._w = pacsv.CSVWriter(
                self.path, schema, write_options=pacsv.WriteOptions(quoting_style="needed")
            )
        else:
            self._w = pq.ParquetWriter(self.path, schema, compression="zstd")

    def write(self, columns: Mapping[str, pa.Array]) -> None:
        arrays = [columns[f.name] for f in self.schema]
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        if self.fmt == "csv":
            self._w.write_batch(batch)
        else:
            self._w.write_table(pa.Table.from_batches([batch]))
        self.rows += batch.num_rows

    def close(self) -> None:
        self._w.close()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_table(folder: Path, name: str, fmt: str, columns: Mapping[str, pa.Array]) -> Path:
    """Write a small table in one go (same formats and guarantees as :class:`TableWriter`)."""
    schema = pa.schema([(k, v.type) for k, v in columns.items()])
    with TableWriter(folder, name, fmt, schema) as w:
        w.write(columns)
    return w.path


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n)`` in pieces of ``size``.

    Generators use a fixed ``size`` (never derived from ``n``) and one random stream per chunk,
    so every full chunk gets the same values whatever ``n`` is.
    """
    return [(s, min(s + size, n)) for s in range(0, n, size)]
