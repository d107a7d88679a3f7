"""The contract every synthetic dataset generator follows.

A generator is a module ``medai/synthetic/<name>.py`` exposing ``SPEC = DatasetSpec(...)``. Its
``write`` function receives a :class:`GenContext` and writes files into ``ctx.public_dir`` (what
trainees see) and ``ctx.hidden_dir`` (held-out split for grading, never mounted for trainees).

:func:`generate` owns everything else: validation of the request, one root seed split into
independent named streams, writing into a temporary folder and moving it into place only when
complete (files appear complete or not at all), and a SHA-256 manifest beside the files.

Two kinds of random streams (the rule every generator follows):

- ``ctx.rng(...)``, from the public seed: population parameters, the train/test assignment and
  the public training rows. Anyone can regenerate these, so self-study and CI get the same bytes.
- ``ctx.hidden_rng(...)``: everything the hidden split depends on, i.e. the test items as a whole
  (their features, published in ``public_dir``, and their labels, in ``hidden_dir``). With a
  deployment secret (``generate(..., secret=...)``, see :mod:`medai.synthetic.secret`) these
  streams are keyed by HMAC-SHA256 of the secret and have nothing to do with the public seed, so
  regenerating the data with any public seed and size reproduces none of the hidden split.
  Without a secret they are the public streams, and the bytes are those of earlier versions.

Layout of a generated data root (``MEDAI_DATA`` points at ``<root>/public``)::

    <root>/public/<name>/...          public split and documentation
    <root>/hidden/<name>/...          hidden split (labels for grading)
    <root>/manifests/<name>.sha256    sha256 of every file of both, relative to <root>
    <root>/manifests/<name>.json      the request: name, n, seed, format, and how the hidden
                                      split was keyed (a fingerprint, never the secret)
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medai.paths import package_file, repo

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


SECRET_BYTES = 32  # size of a deployment's data secret (medai.synthetic.secret writes one)


class DataError(Exception):
    """A generation request that cannot be served; the message says what, where and how to fix."""


def fingerprint(secret: bytes) -> str:
    """A short public name of ``secret`` (an HMAC of a fixed message): tells two keys apart in
    manifests and stamps without revealing anything about the key."""
    return hmac.new(secret, b"medai-data-key-fingerprint-v1", hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class DatasetSpec:
    """What ``medai data list`` shows and how to write one dataset (``write(ctx)``)."""

    name: str
    summary: str
    default_n: int
    formats: tuple[str, ...]
    write: Callable[[GenContext], None]
    unit: str = "rows"  # what n counts: patients, images, notes, ...
    max_n: int = 10**8
    min_n: int = 1


@dataclass
class GenContext:
    """What a generator's ``write`` gets: the request, its two output folders, ``rng`` for what
    is public and ``hidden_rng`` for what the hidden split depends on."""

    spec: DatasetSpec
    n: int
    seed: int
    fmt: str
    public_dir: Path
    hidden_dir: Path
    progress: Callable[[int], None] = field(default=lambda k: None)
    secret: bytes | None = field(default=None, repr=False)  # never printed in a traceback

    def rng(self, *stream: str | int) -> np.random.Generator:
        """An independent random stream named by ``stream`` (e.g. ``ctx.rng("site", 3)``).

        Streams are derived from the root seed and the dataset and stream names, so adding a
        stream never shifts the numbers of another one.
        """
        key = [self.seed] + [_stable_int(s) for s in (self.spec.name, *stream)]
        return np.random.default_rng(np.random.SeedSequence(key))

    @property
    def keyed(self) -> bool:
        """Whether the hidden split comes from a deployment secret (else from the public seed)."""
        return self.secret is not None

    def hidden_rng(
        self, *stream: str | int, public: np.random.Generator | None = None
    ) -> np.random.Generator:
        """The stream named by ``stream`` for what the hidden split depends on.

        With a secret: seeded by HMAC-SHA256(secret, seed + dataset + stream names), which
        nothing a trainee can read determines. Without one: ``public`` if given (a generator that
        draws hidden values further along a stream it shares with public values keeps its
        bytes), else ``rng(*stream)``.
        """
        if self.secret is None:
            return public if public is not None else self.rng(*stream)
        names = [s if isinstance(s, str) else int(s) for s in stream]
        message = json.dumps(["medai-hidden-v1", self.seed, self.spec.name, *names]).encode()
        digest = hmac.new(self.secret, message, hashlib.sha256).digest()
        return np.random.default_rng(np.random.SeedSequence(int.from_bytes(digest, "little")))

    def stream(self, hidden: bool, *names: str | int) -> np.random.Generator:
        """``hidden_rng(*names)`` for an item of the hidden split, else ``rng(*names)``."""
        return self.hidden_rng(*names) if hidden else self.rng(*names)


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
    try:
        module = importlib.import_module(f"medai.synthetic.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"medai.synthetic.{name}":
            raise  # the generator exists but one of its own imports is missing: a real bug
        raise DataError(
            f"dataset '{name}' is catalogued but its generator medai/synthetic/{name}.py is not "
            "installed in this version"
        ) from None
    return module.SPEC


def available() -> list[str]:
    """Names in :data:`GENERATOR_MODULES` whose generator module is present."""
    here = package_file("synthetic")
    return [n for n in GENERATOR_MODULES if (here / f"{n}.py").is_file()]


def all_specs() -> list[DatasetSpec]:
    """Specs of every available generator, in catalogue order."""
    return [get_spec(n) for n in available()]


def _module_file(module: str) -> Path | None:
    """The source file of ``medai.x.y`` in the installed package (no import), if it has one."""
    parts = module.split(".")[1:]
    base = package_file(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _medai_imports(module: str, source: str) -> set[str]:
    """Every ``medai`` module ``source`` (the code of ``module``) imports, at any depth of the
    code (lazy imports inside functions too), with the packages that importing them runs."""
    # Written by hand: the standard library's modulefinder would also walk numpy, pyarrow and
    # scipy (seconds per dataset); only the package's own modules are wanted here.
    tree = ast.parse(source)
    package = module if _module_file(module).name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "medai"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "medai":
                continue
            found.add(target)
            # `from medai.synthetic import _cohort` imports a module, not a name
            found |= {
                f"{target}.{a.name}" for a in node.names if _module_file(f"{target}.{a.name}")
            }
    with_parents = set()
    for name in found:
        parts = name.split(".")
        with_parents |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {m for m in with_parents if _module_file(m) is not None}


def generator_modules(name: str) -> list[str]:
    """The ``medai`` modules whose code can shape the data of generator ``name``: its module
    and everything it imports from the package, transitively (read from the source, so a
    shared helper such as ``_cohort`` or ``core`` itself counts)."""
    start = f"medai.synthetic.{name}"
    if _module_file(start) is None:
        raise DataError(f"no generator module medai/synthetic/{name}.py in this version")
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        source = _module_file(module).read_text(encoding="utf-8")
        todo += sorted(_medai_imports(module, source) - seen)
    return sorted(seen)


def generator_version(name: str) -> str:
    """Short hash of the source of every module in :func:`generator_modules`, so data cached
    for self-study is regenerated whenever any code that shapes it changes."""
    h = hashlib.sha256()
    for module in generator_modules(name):
        h.update(module.encode() + b"\0" + _module_file(module).read_bytes() + b"\0")
    return h.hexdigest()[:12]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_request(
    name: str, *, n: int | None = None, seed: int = 0, fmt: str | None = None
) -> tuple[DatasetSpec, int, str]:
    """Validate a generation request; return ``(spec, n, fmt)`` with defaults filled in.

    Raises :class:`DataError` naming the bad option and how to fix it.
    """
    spec = get_spec(name)
    if n is None:
        n = spec.default_n
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise DataError(f"--n must be a positive whole number of {spec.unit}; got {n!r}")
    if n < spec.min_n:
        raise DataError(f"--n {n} is below the minimum of {spec.min_n} {spec.unit} for '{name}'")
    if n > spec.max_n:
        raise DataError(f"--n {n} is above the limit of {spec.max_n} {spec.unit} for '{name}'")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"--seed must be a whole number >= 0; got {seed!r}")
    fmt = fmt or spec.formats[0]
    if fmt not in spec.formats:
        raise DataError(
            f"dataset '{name}' cannot be written as {fmt}; supported: {', '.join(spec.formats)}"
        )
    return spec, n, fmt


def generate(
    name: str,
    root: Path | str,
    *,
    n: int | None = None,
    seed: int = 0,
    fmt: str | None = None,
    progress: Callable[[int], None] | None = None,
    secret: bytes | None = None,
) -> Path:
    """Generate dataset ``name`` under ``root``; return the public folder.

    ``n`` defaults to the dataset's ``default_n`` and ``fmt`` to its first format. ``progress``,
    if given, is called with the number of units (``spec.unit``) finished since its last call.
    ``secret`` (the deployment's data key, :func:`medai.synthetic.secret.load_secret`) keys the
    hidden split; without it the hidden split follows from the public seed, as for self-study.
    Replaces an earlier generation of the same dataset only once the new one is complete; on any
    error (or interruption) nothing under ``root`` changes. Raises :class:`DataError` for a bad
    request or a failed write.
    """
    spec, n, fmt = check_request(name, n=n, seed=seed, fmt=fmt)
    if secret is not None and (not isinstance(secret, bytes) or len(secret) < SECRET_BYTES):
        raise DataError(
            f"the data secret must be at least {SECRET_BYTES} random bytes; "
            "make one with `medai data key FILE`"
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
            secret=secret,
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
        params = {"name": name, "n": n, "seed": seed, "format": fmt, "hidden_key": "public-seed"}
        if secret is not None:  # a fingerprint says which key, and reveals nothing of it
            params["hidden_key"] = f"secret:{fingerprint(secret)}"
        (tmp / "manifests" / f"{name}.json").write_text(json.dumps(params, indent=2) + "\n")
        _swap_into_place(tmp, root, name)
    except OSError as exc:
        raise DataError(f"writing '{name}' under {root} failed: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root / "public" / name


def _swap_into_place(tmp: Path, root: Path, name: str) -> None:
    """Move the finished ``tmp/{public,hidden,manifests}`` parts over the old ones under ``root``.

    Old parts are first renamed into ``tmp/old`` (same file system, so each rename is atomic),
    then the new ones are renamed into place; if any rename fails, the old version is restored.
    """
    moves = [
        (tmp / "public" / name, root / "public" / name),
        (tmp / "hidden" / name, root / "hidden" / name),
        (tmp / "manifests" / f"{name}.sha256", root / "manifests" / f"{name}.sha256"),
        (tmp / "manifests" / f"{name}.json", root / "manifests" / f"{name}.json"),
    ]
    old = tmp / "old"
    old.mkdir()
    saved: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for i, (_, dest) in enumerate(moves):
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                keep = old / str(i)
                os.replace(dest, keep)
                saved.append((keep, dest))
        for src, dest in moves:
            os.replace(src, dest)
            placed.append(dest)
    except BaseException:
        for dest in placed:
            if dest.is_dir():
                shutil.rmtree(dest, ignore_errors=True)
            else:
                dest.unlink(missing_ok=True)
        for keep, dest in saved:
            os.replace(keep, dest)
        raise


def card_path(name: str) -> Path | None:
    """The dataset card ``datasets/synthetic/<name>.md``, if present.

    Cards are repository content (the course site publishes them), not package data: an
    installed package without a checkout has none, and ``medai data info`` says where they are.
    """
    card = repo("datasets", "synthetic", f"{name}.md")
    return card if card.is_file() else None


def hidden_keying(name: str, root: Path | str) -> str:
    """How the hidden split of ``name`` under ``root`` was drawn: ``"secret:<fingerprint>"``
    (from a deployment secret) or ``"public-seed"`` (regenerable by anyone; also what a
    generation without this record, or with no manifest at all, is taken to be)."""
    try:
        params = json.loads((Path(root) / "manifests" / f"{name}.json").read_text())
    except (OSError, ValueError):
        return "public-seed"
    key = params.get("hidden_key") if isinstance(params, dict) else None
    return key if isinstance(key, str) and key.startswith("secret:") else "public-seed"


def verify(name: str, root: Path | str) -> list[str]:
    """Compare a generated dataset under ``root`` with its manifest; return the problems found.

    An empty list means every file listed is present with the recorded SHA-256 and no file was
    added to ``public/<name>`` or ``hidden/<name>``.
    """
    get_spec(name)
    root = Path(root).resolve()
    manifest = root / "manifests" / f"{name}.sha256"
    if not manifest.is_file():
        raise DataError(
            f"no manifest {manifest}; generate it first: `medai data generate {name} --out {root}`"
        )
    problems: list[str] = []
    listed: set[str] = set()
    for line in manifest.read_text().splitlines():
        digest, rel = line.split("  ", 1)
        listed.add(rel)
        f = root / rel
        if not f.is_file():
            problems.append(f"missing: {rel}")
        elif sha256_file(f) != digest:
            problems.append(f"changed: {rel}")
    for part in ("public", "hidden"):
        for f in sorted((root / part / name).rglob("*")):
            rel = f.relative_to(root).as_posix()
            if f.is_file() and rel not in listed:
                problems.append(f"unexpected: {rel}")
    return problems
