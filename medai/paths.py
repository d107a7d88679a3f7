"""Where things live: the package and its data, the repository checkout, the state folders.

The only module that knows. Three kinds of place:

- **Package data** ships inside the ``medai`` package (templates, the grading UI, the hub's
  config file) and is found with :mod:`importlib.resources`, so an installed wheel has it.
- **Repository content** (``courses/``, ``labs/``, ``datasets/synthetic/`` cards, ``site/``,
  ``autograder/policy.yaml``, ``node_modules/``) is not part of the package. It is read from the
  checkout this package runs from (an editable install), else relative to the current folder
  (an installed package run inside a checkout). :func:`require_repo` turns a missing piece into
  an error that says what is missing and how to fix it.
- **State** the product writes: the hub's state folder, generated data, the self-study data
  cache and the built site. Defaults are relative to the current folder (or the user's cache).
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

PACKAGE_NAME = "medai"


class RepositoryContentMissing(FileNotFoundError):
    """A repository file or folder the command needs is not there; ``str()`` says how to fix."""


def package_dir() -> Path:
    """The folder of the installed ``medai`` package (its package data lives under it)."""
    return Path(str(files(PACKAGE_NAME)))


def package_file(*parts: str) -> Path:
    """A file of the package's data, e.g. ``package_file("hub", "grading_ui")``."""
    return Path(str(files(PACKAGE_NAME).joinpath(*parts)))


def checkout() -> Path | None:
    """The source checkout this package runs from, or None for an installed package.

    A checkout is the folder holding the package folder and a ``pyproject.toml`` that names this
    distribution (so a site-packages folder is never mistaken for one).
    """
    root = package_dir().parent
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    return root if f'name = "{PACKAGE_NAME}"' in text else None


def repo(*parts: str) -> Path:
    """A path of repository content: in the checkout, else relative to the current folder."""
    root = checkout()
    return root.joinpath(*parts) if root else Path(*parts)


def require_repo(path: Path, what: str, fix: str) -> Path:
    """``path`` if it exists; else raise :class:`RepositoryContentMissing` naming ``what`` is
    missing, where it was looked for, and the ``fix`` (a sentence: "Run ... or pass ...")."""
    if path.exists():
        return path
    where = (
        f"this checkout ({checkout()})"
        if checkout()
        else f"the current folder ({Path.cwd()}); medai is installed as a package "
        f"({package_dir()}), which does not include repository content"
    )
    raise RepositoryContentMissing(
        f"{what} not found: {path} is part of the MedAI Lab repository and is not in {where}. "
        f"{fix}."
    )


# --------------------------------------------------------------------------- state

STATE = Path(".medai") / "state"  # the hub's state folder (`medai up --state`)
DATA_ROOT = Path(".medai") / "data"  # `medai data generate --out`
SITE_OUT_PARTS = ("build", "site")  # `medai site build --out`, under the checkout


def data_cache() -> Path:
    """Self-study data generated on first use (``$XDG_CACHE_HOME/medai/data``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / PACKAGE_NAME / "data"
