"""Publishing the catalogue into the state folder, for the trainees' servers.

``<state>/catalog/`` is bound read-only at ``/srv/medai/catalog`` in every trainee's server
(``~/catalog`` links to it, so it shows in JupyterLab's file browser)::

    README.md                 the catalogue (datasets, models), trainees' view
    models/<name>/...         the models (medai.catalog.models), $MEDAI_MODELS

Only the host writes here: ``medai up`` (reference models built once, page rendered at every
start), ``medai models build``, and the data sandbox when it releases a model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from medai.catalog import reference
from medai.catalog.cards import SandboxedDataset
from medai.catalog.entries import all_datasets, all_models
from medai.catalog.models import ModelError, read_card
from medai.catalog.render import catalogue_markdown

PAGE = "README.md"


def stale_reference_models(models: Path) -> list[str]:
    """Reference models missing from ``models`` or built by another recipe version."""
    out = []
    for recipe in reference.RECIPES:
        try:
            card = read_card(models / recipe.name)
        except ModelError:
            out.append(recipe.name)
            continue
        if card.version != reference.VERSION:
            out.append(recipe.name)
    return out


def write_page(
    catalog: Path, course: Any = None, extra_sandboxed: Iterable[SandboxedDataset] = ()
) -> Path:
    """Render the trainees' catalogue page into ``catalog/README.md`` (read-only for them).

    ``extra_sandboxed``: sandboxed datasets besides the sandbox registry's (tests, or a
    deployment wiring its own list)."""
    cards, _problems = all_models(catalog / "models")
    text = catalogue_markdown(all_datasets(course, extra_sandboxed), cards, staff=False)
    catalog.mkdir(parents=True, exist_ok=True)
    page = catalog / PAGE
    tmp = page.with_name(f".{PAGE}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    tmp.replace(page)
    return page


def publish(catalog: Path, course: Any = None, echo: Callable[[str], None] = print) -> list[str]:
    """Build the reference models that are missing or stale, then write the page; return the
    names of the models built.

    A hub still starts when a reference model cannot be built (the catalogue is not needed to
    work on the labs): the reason is printed and the page lists the models that exist."""
    models = catalog / "models"
    todo = stale_reference_models(models)
    if todo:
        try:
            reference.build(models, todo)
        except Exception as exc:  # noqa: BLE001 - reported, and the hub starts without them
            echo(
                f"  catalogue: WARNING: reference model(s) {', '.join(todo)} not built "
                f"({type(exc).__name__}: {exc}); `medai models build --state <state>` retries"
            )
            todo = []
        else:
            echo(f"  catalogue: built reference model(s) {', '.join(todo)}")
    write_page(catalog, course)
    return todo
