"""Cards and the whole catalogue rendered to Markdown (site pages, JupyterLab, the CLI).

Pure functions of the cards: the same card always gives the same text, which is what the
site's drift test compares.
"""

from __future__ import annotations

from medai.catalog.cards import DatasetEntry, ModelCard

METRIC_LABELS = {
    "auroc": "AUROC",
    "average_precision": "Average precision",
    "brier": "Brier score",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV",
}


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def model_card_markdown(card: ModelCard, heading: int = 1) -> str:
    """A model card as a Markdown page (``heading``: level of its title)."""
    h = "#" * heading
    d = card.data
    names = list(card.metrics)
    lines = [
        f"{h} {card.title}",
        "",
        f"> **{card.kind.capitalize()} model `{card.name}`**, version {card.version}, by "
        f"{card.author}. Load it in a notebook with "
        f'`from medai.catalog import load_model; model = load_model("{card.name}")`.',
        "",
        card.summary,
        "",
        f"{h}# Intended use",
        "",
        card.intended_use,
        "",
        "Not for:",
        "",
        *[f"- {x}" for x in card.not_for],
        "",
        f"{h}# Model",
        "",
        card.algorithm,
        "",
        f"{h}# Data",
        "",
        "| | |",
        "|---|---|",
        f"| dataset | `{d.dataset}` ({d.access}) |",
        f"| how to get it | `{_cell(d.recipe)}` |",
        f"| outcome | {_cell(d.target)} |",
        f"| fitted on | {_cell(d.training)}: {d.n_train:,} rows |",
        f"| evaluated on | {_cell(d.evaluation)}: {d.n_eval:,} rows |",
        f"| inputs | {', '.join(f'`{f}`' for f in d.features)} |",
        "",
        f"{h}# Metrics",
        "",
    ]
    if card.threshold is not None:
        lines += [
            f"Sensitivity, specificity and PPV flag a risk of at least {card.threshold:.0%}.",
            "",
        ]
    lines += [
        "| " + " | ".join(METRIC_LABELS.get(n, n) for n in names) + " |",
        "|" + "---:|" * len(names),
        "| " + " | ".join(_fmt(card.metrics[n]) for n in names) + " |",
        "",
        f"{h}# Metrics by subgroup",
        "",
        "Each attribute on its own (not their combinations); – where a metric is undefined.",
        "",
        "| attribute | group | n | events | "
        + " | ".join(METRIC_LABELS.get(n, n) for n in names)
        + " |",
        "|---|---|---:|---:|" + "---:|" * len(names),
    ]
    for s in card.subgroups:
        cells = [_cell(s.attribute), _cell(s.group), f"{s.n:,}", f"{s.positives:,}"]
        cells += [_fmt(s.metrics.get(n)) for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"{h}# Release checks",
        "",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    for c in card.release_checks:
        lines.append(
            f"| {_cell(c.name)} | {'passed' if c.passed else 'FAILED'} | {_cell(c.detail)} |"
        )
    lines += ["", f"{h}# Limitations", "", *[f"- {x}" for x in card.limitations], ""]
    lines += [f"File `{card.file}`, SHA-256 `{card.sha256}`.", ""]
    return "\n".join(lines)


def access_text(entry: DatasetEntry, staff: bool) -> str:
    if entry.kind == "public" or not staff:
        return entry.access
    if not entry.grants:
        return entry.access + " (nobody yet)"
    who = ", ".join(
        f"{g.user} until {g.until:%Y-%m-%d}" if g.until else f"{g.user} (no end)"
        for g in entry.grants
    )
    return f"{entry.access}: {who}"


def catalogue_markdown(
    datasets: list[DatasetEntry],
    models: list[ModelCard],
    *,
    staff: bool = False,
    model_link: str = "models/{name}/card.md",
) -> str:
    """The whole catalogue as one page: datasets (public and sandboxed), then models.

    ``staff``: name who has access to each sandboxed dataset until when; the trainees' copy
    (``staff=False``) says only how many have it. ``model_link``: where each model's card is,
    relative to this page.
    """
    lines = [
        "# Course catalogue",
        "",
        "What this course offers: datasets you may read (public, synthetic), datasets you may "
        "compute on in the data sandbox without seeing their rows (sandboxed), and trained "
        "models with their cards. In a notebook: `$MEDAI_DATA/<name>` for public data, "
        '`from medai.catalog import load_model; load_model("<name>")` for a model.',
        "",
        "## Datasets",
        "",
        "| name | kind | size | where | access | what |",
        "|---|---|---|---|---|---|",
    ]
    for e in datasets:
        lines.append(
            f"| `{e.name}` | {e.kind} | {_cell(e.size) or '–'} | `{_cell(e.location)}` | "
            f"{_cell(access_text(e, staff))} | {_cell(e.summary)} |"
        )
    if not datasets:
        lines.append("| – | | | | | no dataset yet |")
    sandboxed = [e for e in datasets if e.kind == "sandboxed"]
    for e in sandboxed:
        lines += [
            "",
            f"### `{e.name}` (sandboxed): {e.title}",
            "",
            e.summary,
            "",
            f"Release policy: {e.policy}",
            "",
            f"Mock twin: `{e.location}`",
            "",
        ]
        if e.columns:
            lines += ["| column | type | meaning |", "|---|---|---|"]
            lines += [f"| `{c.name}` | {c.type} | {_cell(c.description)} |" for c in e.columns]
            lines.append("")
    lines += ["", "## Models", ""]
    if models:
        lines += [
            "| name | kind | outcome | AUROC | dataset | card |",
            "|---|---|---|---:|---|---|",
        ]
        for m in models:
            link = model_link.format(name=m.name)
            lines.append(
                f"| `{m.name}` | {m.kind} | {_cell(m.data.target)} | "
                f"{_fmt(m.metrics.get('auroc'))} | `{m.data.dataset}` | [card]({link}) |"
            )
    else:
        lines.append("No model yet (course staff: `medai models build`).")
    lines.append("")
    return "\n".join(lines)
