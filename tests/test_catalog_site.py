"""The site's *Models* section is generated from the model cards and says what they say."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from medai.catalog import reference
from medai.catalog.cards import CARD_FILE
from medai.catalog.models import list_models
from medai.catalog.render import model_card_markdown
from medai.catalog.site import model_pages, stage_models
from medai.site.build import build_site
from tests.test_site import make_course

pytestmark = pytest.mark.slow  # trains the reference models and builds a site


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self._in = False

    def handle_starttag(self, tag, attrs):
        if tag in ("td", "th"):
            self._in, self.cells = True, [*self.cells, ""]

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in = False

    def handle_data(self, data):
        if self._in:
            self.cells[-1] += data


def cells(html: str) -> list[str]:
    p = _Cells()
    p.feed(html)
    return [c.strip() for c in p.cells]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    reference.build(root)
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory, models) -> Path:
    root = tmp_path_factory.mktemp("course")
    paths = make_course(root)
    from dataclasses import replace

    build_site(root / "site", replace(paths, models=models))
    return root / "site"


def test_model_pages_are_the_rendered_cards(models, tmp_path):
    docs = tmp_path / "docs"
    pages = stage_models(models, docs)
    cards, _ = list_models(models)
    assert pages == ["models/index.md", *(f"models/{c.name}.md" for c in cards)]
    for c in cards:
        assert (docs / "models" / f"{c.name}.md").read_text() == model_card_markdown(c)
    index = (docs / "models" / "index.md").read_text()
    assert all(f"]({c.name}.md)" in index for c in cards)


def test_built_pages_show_every_subgroup_figure_of_the_card(site, models):
    cards, _ = list_models(models)
    assert cards
    for c in cards:
        got = cells((site / "models" / c.name / "index.html").read_text("utf-8"))
        for s in c.subgroups:
            row = [s.attribute, s.group, f"{s.n:,}", f"{s.positives:,}"]
            row += ["–" if s.metrics[k] is None else f"{s.metrics[k]:.3f}" for k in c.metrics]
            assert any(got[i : i + len(row)] == row for i in range(len(got))), (c.name, row)
        for check in c.release_checks:
            assert check.name in got
    nav = (site / "index.html").read_text("utf-8")
    assert 'href="models/"' in nav  # a Models section in the navigation


def test_a_changed_card_changes_its_page_and_a_stale_model_is_rebuilt(models, tmp_path):
    import shutil

    root = tmp_path / "models"
    shutil.copytree(models, root)
    path = root / "stroke-risk-logistic" / CARD_FILE
    card = json.loads(path.read_text())
    card["metrics"]["auroc"] = 0.5123
    path.write_text(json.dumps(card))
    assert "| 0.512 |" in model_pages(root)["models/stroke-risk-logistic.md"]
    card["version"] = "an-older-recipe"
    path.write_text(json.dumps(card))
    stage_models(root, tmp_path / "docs")  # stale: retrained from the recipe
    rebuilt = json.loads(path.read_text())
    assert rebuilt["version"] == reference.VERSION
    first = json.loads((models / "stroke-risk-logistic" / CARD_FILE).read_text())
    rebuilt.pop("sha256"), first.pop("sha256")  # the zip container holds its write time
    assert rebuilt == first


def test_hub_start_builds_only_what_is_missing_and_survives_a_failed_build(
    models, tmp_path, monkeypatch
):
    import shutil

    from medai.catalog import publish

    catalog = tmp_path / "catalog"
    shutil.copytree(models, catalog / "models")
    said: list[str] = []
    assert publish.publish(catalog, None, said.append) == []  # all fresh: nothing trained
    assert said == [] and "stroke-risk-boosting" in (catalog / "README.md").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("solver exploded")

    shutil.rmtree(catalog / "models" / "stroke-risk-boosting")
    monkeypatch.setattr(publish.reference, "build", broken)
    assert publish.publish(catalog, None, said.append) == []
    assert "stroke-risk-boosting not built (RuntimeError: solver exploded)" in said[0]
    assert "medai models build" in said[0]
    page = (catalog / "README.md").read_text()
    assert "stroke-risk-logistic" in page and "stroke-risk-boosting" not in page
