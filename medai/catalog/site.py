"""The catalogue's pages on the course site: a *Models* section generated from the model cards.

``medai site build`` calls :func:`stage_models` with a models folder (``build/models`` of the
checkout by default): reference models missing there or built by another recipe version are
trained first (seconds, once), then every card becomes ``models/<name>.md`` and the section's
index lists them. The dataset cards already have their own section (``datasets/``).
"""

from __future__ import annotations

from pathlib import Path

from medai.catalog.models import list_models
from medai.catalog.publish import stale_reference_models
from medai.catalog.reference import build
from medai.catalog.render import METRIC_LABELS, model_card_markdown

INDEX_INTRO = (
    "Trained models the course offers, each with its card: what it is for, the data it "
    "learnt from, its metrics overall and per subgroup, and the checks it passed before it "
    "was published. *Reference* models are trained by the course from the public synthetic "
    "datasets (`medai models build`, the same on every machine); *released* models were "
    "trained inside the data sandbox on data nobody could read, and let out after their "
    "checks. In the hub, load one in a notebook with "
    '`from medai.catalog import load_model; load_model("<name>")`; see '
    "[the catalogue guide](../catalogue.md)."
)


def model_pages(models: Path) -> dict[str, str]:
    """Page path (relative to the site's docs) -> Markdown, for every model in ``models``."""
    cards, problems = list_models(models)
    if problems:
        raise ValueError("models folder has broken entries:\n" + "\n".join(problems))
    rows = [
        "| model | kind | outcome | AUROC | dataset |",
        "|---|---|---|---:|---|",
    ]
    pages: dict[str, str] = {}
    for c in cards:
        auroc = c.metrics.get("auroc")
        rows.append(
            f"| [{c.title}]({c.name}.md) | {c.kind} | {c.data.target} | "
            f"{'–' if auroc is None else f'{auroc:.3f}'} | [{c.data.dataset}]"
            f"(../datasets/{c.data.dataset}.md) |"
        )
        pages[f"models/{c.name}.md"] = model_card_markdown(c)
    if not cards:
        rows = ["No model has been built yet."]
    legend = ", ".join(f"{k} = {v}" for k, v in METRIC_LABELS.items() if k == "auroc")
    index = "\n".join(
        [
            "# Models",
            "",
            INDEX_INTRO,
            "",
            *rows,
            "",
            f"({legend} on the model's evaluation rows.)",
            "",
        ]
    )
    return {"models/index.md": index, **pages}


def stage_models(models: Path, docs: Path) -> list[str]:
    """Build stale reference models into ``models``, write their pages into ``docs``; return
    the page paths in navigation order (index first)."""
    stale = stale_reference_models(models)
    if stale:
        build(models, stale)
    pages = model_pages(models)
    for rel, text in pages.items():
        path = docs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(pages)
