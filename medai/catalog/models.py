"""The models folder: one sub-folder per model, with its file and its card.

Layout (``<state>/catalog/models`` on the host, read-only at ``$MEDAI_MODELS`` in a trainee's
server)::

    <models>/<name>/model.skops   the fitted estimator, skops format
    <models>/<name>/card.json     its ModelCard (medai.catalog.cards)
    <models>/<name>/card.md       the card rendered for reading in JupyterLab

Reference models (``medai models build``, :func:`write_model`) and models the data sandbox
releases (:func:`write_model_file`, from the skops file its job wrote) are published the same
way. A model file is never a pickle: loading a pickle runs whatever
code its author put in it, and a released model's author is a trainee. skops stores the
estimator as data and :func:`load_model` refuses any type outside scikit-learn, NumPy and SciPy
(a function such as ``os.system`` hidden in a pipeline is such a type).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medai.catalog.cards import CARD_FILE, ModelCard, check_name

MODELS_ENV = "MEDAI_MODELS"
# Types outside skops' own trusted list that a model may still contain: these libraries' own
# classes (a user's class or function never starts with these names).
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")


class ModelError(Exception):
    """A model that cannot be listed, written or loaded; the message says what and how to fix."""


def resolve_models_dir(path: Path | str | None = None) -> Path:
    """``path``, else ``$MEDAI_MODELS`` (set in every trainee's server)."""
    if path is not None:
        return Path(path)
    env = os.environ.get(MODELS_ENV)
    if not env:
        raise ModelError(
            f"no models folder: pass models_dir=... or set {MODELS_ENV} (the hub sets it in "
            "every trainee's server; on the host it is <state>/catalog/models, filled by "
            "`medai models build`)"
        )
    return Path(env)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_card(folder: Path) -> ModelCard:
    path = folder / CARD_FILE
    try:
        return ModelCard.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(
            f"{path}: missing; a model folder holds model.skops and card.json"
        ) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ModelError(f"{path}: {where}: {first['msg']}") from None


def list_models(root: Path | str | None = None) -> tuple[list[ModelCard], list[str]]:
    """Every model's card, by name, and a problem line for each folder that is not a model."""
    root = resolve_models_dir(root)
    cards, problems = [], []
    if not root.is_dir():
        return cards, problems
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            card = read_card(folder)
        except ModelError as exc:
            problems.append(str(exc))
            continue
        if card.name != folder.name:
            problems.append(f"{folder}: card names '{card.name}'; the folder must have that name")
            continue
        cards.append(card)
    return cards, problems


def get_card(name: str, root: Path | str | None = None) -> ModelCard:
    check_name(name, "model name")
    root = resolve_models_dir(root)
    folder = root / name
    if not folder.is_dir():
        known = ", ".join(c.name for c in list_models(root)[0]) or "none yet"
        raise ModelError(
            f"no model '{name}' in {root} (models: {known}; `medai models list` shows them)"
        )
    return read_card(folder)


def untrusted_types(path: Path) -> list[str]:
    """Types in a skops file that neither skops nor :data:`TRUSTED_PREFIXES` trusts."""
    return [t for t in _skops_types(path) if not t.startswith(TRUSTED_PREFIXES)]


def _skops_types(path: Path) -> list[str]:
    """skops' list of the types in ``path`` it does not trust by default; a file that is not a
    skops file (a pickle renamed, say) is a :class:`ModelError`."""
    import zipfile

    import skops.io as sio

    try:
        return list(sio.get_untrusted_types(file=path))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ModelError(
            f"{path}: not a readable skops file ({type(exc).__name__}); models are stored with "
            "skops.io.dump, never as pickles"
        ) from None


def load_model(name: str, models_dir: Path | str | None = None) -> Any:
    """Load catalogue model ``name`` (e.g. in a notebook: ``load_model("stroke-risk-logistic")``).

    Checks the file against the SHA-256 on its card and refuses any type outside scikit-learn,
    NumPy and SciPy, so a model file cannot run code when it is loaded.
    """
    import skops.io as sio

    root = resolve_models_dir(models_dir)
    card = get_card(name, root)
    path = root / name / card.file
    if not path.is_file():
        raise ModelError(f"{path}: missing; rebuild with `medai models build` or re-release it")
    if sha256_file(path) != card.sha256:
        raise ModelError(
            f"{path}: its SHA-256 differs from the one on its card; the file was changed after "
            "release. Do not use it; tell the course staff."
        )
    bad = untrusted_types(path)
    if bad:
        raise ModelError(
            f"{path}: refused to load, it contains types outside scikit-learn/NumPy/SciPy: "
            f"{', '.join(bad[:5])}"
        )
    # what is left untrusted by skops is scikit-learn/NumPy/SciPy's own (checked just above)
    return sio.load(path, trusted=_skops_types(path))


def write_model(root: Path | str, estimator: Any, card: ModelCard) -> Path:
    """Write ``estimator`` and ``card`` as ``<root>/<card.name>/`` (replacing an older version
    only once the new one is complete); the card's ``sha256`` is filled in from the file.

    For reference models (``medai models build``). Raises :class:`ModelError` if the estimator
    holds types :func:`load_model` would refuse, so nothing unloadable is ever published.
    """
    import skops.io as sio

    return _publish(root, card, lambda path: sio.dump(estimator, path))


def write_model_file(root: Path | str, skops_file: Path | str, card: ModelCard) -> Path:
    """Publish a model that is already a skops file, as :func:`write_model` does.

    For the data sandbox: a job serialises its model with ``skops.io.dump`` inside its own
    sandbox and the service publishes that file with its card, so no object made by a
    trainee's code is ever loaded (or unpickled) in the trusted service. The same type check
    as :func:`load_model` runs before anything appears in the folder.
    """
    src = Path(skops_file)
    return _publish(root, card, lambda path: shutil.copyfile(src, path))


def _publish(root: Path | str, card: ModelCard, write: Callable[[Path], object]) -> Path:
    from medai.catalog.render import model_card_markdown

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{card.name}.", dir=root))
    try:
        path = tmp / card.file
        write(path)
        bad = untrusted_types(path)
        if bad:
            raise ModelError(
                f"model '{card.name}' holds types outside scikit-learn/NumPy/SciPy "
                f"({', '.join(bad[:5])}); only such models can be put in the catalogue"
            )
        card = card.model_copy(update={"sha256": sha256_file(path)})
        (tmp / CARD_FILE).write_text(
            json.dumps(card.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
        )
        (tmp / "card.md").write_text(model_card_markdown(card), encoding="utf-8")
        for p in (tmp, *tmp.iterdir()):
            p.chmod(0o755 if p.is_dir() else 0o644)
        final = root / card.name
        if final.exists():
            old = root / f".{card.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
