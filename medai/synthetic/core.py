"""The contract every synthetic dataset generator follows.

A generator is a module ``medai/synthetic/<name>.py`` exposing ``SPEC = DatasetSpec(...)``. Its
``write`` function receives a :class:`GenContext` and writes files into ``ctx.public_dir`` (what
trainees see) and ``ctx.hidden_dir`` (held-out split for grading, never mounted for trainees).

:func:`generate` owns everything else: validation of the request, one root seed split into
independent named streams, writing into a temporary folder and moving it into place only when
complete (files appear complete or not at all), and a SHA-256 manifest beside the files.

Layout of a generated data root (``MEDAI_DATA`` points at ``<root>/public``)::

    <root>/public/<name>/...          public split and documentation
    <root>/hidden/<name>/...          hidden split (labels for grading)
    <root>/manifests/<name>.sha256    sha256 of every file of both, relative to <root>
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Module names under medai.synthetic that define a SPEC, in catalogue order.
GENERATOR_MODULES: tuple[str, ...] = (
    "ehr",
    "multisite",
    "survival",
    "skin",
    "tumour",
    "rppg",
    "ecg",
    "notes",
    "kb",
    "label_scarce",
)


class DataError(Exception):
    """A generation request that cannot be served; the message says what, where and how to fix."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    summary: str
    default_n: int
    formats: tuple[str, ...]
    write: Callable[[GenContext], None]
    unit: str = "rows"  # what n counts: patients, images, notes, ...
    max_n: int = 10**8


@dataclass
class GenContext:
    spec: DatasetSpec
    n: int
    seed: int
    fmt: str
    public_dir: Path
    hidden_dir: Path
    progress: Callable[[int], None] = field(default=lambda k: None)

    def rng(self, *stream: str | int) -> np.random.Generator:
        """An independent random stream named by ``stream`` (e.g. ``ctx.rng("site", 3)``).

        Streams are derived from the root seed and the dataset and stream names, so adding a
        stream never shifts the numbers of another one.
        """
        key = [self.seed] + [_stable_int(s) for s in (self.spec.name, *stream)]
        return np.random.default_rng(np.random.SeedSequence(key))


def _stable_int(x: str | int) -> int:
    if isinstance(x, int):
        return x
    return int.from_bytes(hashlib.sha256(x.encode()).digest()[:8], "little")


def get_spec(name: str) -> DatasetSpec:
    if name not in GENERATOR_MODULES:
        raise DataError(
            f"unknown dataset '{name}'; choose one of: {', '.join(GENERATOR_MODULES)} "
            "(see `medai data list`)"
        )
    module = importlib.import_module(f"medai.synthetic.{name}")
    return module.SPEC


def all_specs() -> list[DatasetSpec]:
    return [get_spec(n) for n in GENERATOR_MODULES]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def generate(
    name: str,
    root: Path | str,
    *,
    n: int | None = None,
    seed: int = 0,
    fmt: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Generate dataset ``name`` under ``root``; return the public folder.

    Replaces an earlier generation of the same dataset only once the new one is complete.
    """
    spec = get_spec(name)
    if n is None:
        n = spec.default_n
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise DataError(f"--n must be a positive whole number of {spec.unit}; got {n!r}")
    if n > spec.max_n:
        raise DataError(f"--n {n} is above the limit of {spec.max_n} {spec.unit} for '{name}'")
    if seed < 0:
        raise DataError(f"--seed must be >= 0; got {seed}")
    fmt = fmt or spec.formats[0]
    if fmt not in spec.formats:
        raise DataError(
            f"dataset '{name}' cannot be written as {fmt}; supported: {', '.join(spec.formats)}"
        )
    root = Path(root).resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create output folder {root}: {exc.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise DataError(f"output folder {root} is not writable; choose another with --out")

    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        ctx = GenContext(
            spec=spec,
            n=n,
            seed=seed,
            fmt=fmt,
            public_dir=tmp / "public" / name,
            hidden_dir=tmp / "hidden" / name,
            progress=progress or (lambda k: None),
        )
        ctx.public_dir.mkdir(parents=True)
        ctx.hidden_dir.mkdir(parents=True)
        spec.write(ctx)
        lines = []
        for part in ("public", "hidden"):
            for f in sorted((tmp / part / name).rglob("*")):
                if f.is_file():
                    rel = f.relative_to(tmp).as_posix()
                    lines.append(f"{sha256_file(f)}  {rel}\n")
        (tmp / "manifests").mkdir()
        (tmp / "manifests" / f"{name}.sha256").write_text("".join(lines))
        # Move the finished parts into place; the old version is removed only now.
        for part in ("public", "hidden"):
            dest = root / part / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp / part / name, dest)
        (root / "manifests").mkdir(exist_ok=True)
        os.replace(tmp / "manifests" / f"{name}.sha256", root / "manifests" / f"{name}.sha256")
    except OSError as exc:
        raise DataError(f"writing '{name}' under {root} failed: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root / "public" / name
