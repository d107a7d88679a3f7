"""The course site: strict build, offline, student versions only, automatic navigation.

Most tests build a small course in a temporary folder (one module, one nbgrader lab written by
:mod:`medai.testing.example_lab`, one dataset card) so the secret lines are known exactly; one test
builds the repository's real site through the CLI.
"""

from __future__ import annotations

import re
import shutil
import textwrap
import zipfile
from pathlib import Path

import nbformat
import pytest
from typer.testing import CliRunner

from medai.site.build import MARKER, SiteBuildError, SitePaths, build_site, find_external_assets
from medai.site.labs import discover_labs
from medai.site.leaks import find_leaks, secret_lines
from medai.testing import example_lab as ex

REPO = Path(__file__).resolve().parent.parent
HUB = "http://hub.example.org:8000"
ASSET_TAG = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"?((?:https?:)?//[^\"\s>]+)", re.I)


def make_course(root: Path) -> SitePaths:
    """A tiny course: home, getting started, one module claiming the example lab, one card."""
    courses = root / "courses"
    (courses / "01-intro").mkdir(parents=True)
    (courses / "index.md").write_text(
        "# Tiny course\n\nStart with [getting started](getting-started.md), then the "
        "[labs](labs/index.md) and [datasets](datasets/index.md).\n",
        encoding="utf-8",
    )
    (courses / "getting-started.md").write_text("# Getting started\n\nRead on.\n")
    (courses / "01-intro" / "index.md").write_text(
        "---\nlabs: [example-lab]\n---\n# Module 1: First steps\n\nSome reading.\n"
    )
    ex.write_example_lab(root / "labs")
    (root / "labs" / "README.md").write_text("# Lab format\n\nFor authors; not on the site.\n")
    data = root / "datasets"
    data.mkdir()
    (data / "README.md").write_text(
        "# Dataset catalog\n\n- [Toy cohort](toy.md), made by "
        "[the generator](../../medai/synthetic/core.py).\n"
    )
    (data / "toy.md").write_text("# Toy cohort\n\nA card.\n")
    config = root / "course.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            course: {{id: demo1, title: Demo, hub_url: "{HUB}/"}}
            people: {{instructors: [ann]}}
            labs:
              - {{id: example-lab, title: "Example lab", source: labs/example-lab}}
            """
        )
    )
    return SitePaths(courses=courses, labs=root / "labs", datasets=data, config=config)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[SitePaths, Path]:
    root = tmp_path_factory.mktemp("tiny")
    paths = make_course(root)
    build_site(root / "site", paths)
    return paths, root / "site"


def _html(site: Path, page: str) -> str:
    return (site / page / "index.html" if page else site / "index.html").read_text("utf-8")


def test_lab_is_rendered_as_student_version_on_its_module_page(tiny):
    _, site = tiny
    page = _html(site, "01-intro")
    assert "Module 1: First steps" in page and "Some reading." in page
    assert "YOUR CODE HERE" in page and "NotImplementedError" in page
    assert "example-solution-line" not in page and "example-hidden-check" not in page
    # the lab is on its module page, not on a page of its own
    assert not (site / "labs" / "example-lab").exists()
    assert (
        "For authors; not on the site." not in (site / "search" / "search_index.json").read_text()
    )
    assert 'href="../01-intro/"' in _html(site, "labs")


def test_download_and_open_in_hub_links(tiny):
    _, site = tiny
    page = _html(site, "01-intro")
    hrefs = re.findall(r'href="([^"]+)"', page)
    download = [h for h in hrefs if h.endswith("example-lab.ipynb") and not h.startswith("http")]
    assert download, "no download link for the student notebook"
    nb_path = (site / "01-intro" / download[0]).resolve()
    assert nb_path.is_file()
    expected = f"{HUB}/hub/user-redirect/lab/tree/demo1/example-lab/example-lab.ipynb"
    assert expected in hrefs
    nb = nbformat.read(nb_path, as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    assert "raise NotImplementedError()" in text
    assert ex.SOLUTION_LINE not in text and ex.HIDDEN_LINE not in text
    assert ex.MD_SOLUTION_LINE not in text
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    # the lab folder as a zip: notebook and the task file its checks read
    zips = [h for h in hrefs if h.endswith("example-lab.zip")]
    assert zips
    with zipfile.ZipFile((site / "01-intro" / zips[0]).resolve()) as zf:
        names = set(zf.namelist())
        assert {"example-lab/example-lab.ipynb", "example-lab/tasks.yaml"} <= names
        zipped = zf.read("example-lab/example-lab.ipynb").decode()
    assert "example-solution-line" not in zipped and "example-hidden-check" not in zipped


def test_no_secret_anywhere_in_the_site(tiny):
    paths, site = tiny
    secrets = secret_lines(paths.labs / "example-lab" / "example-lab.ipynb")
    expected = {
        " ".join(x.split()) for x in (ex.SOLUTION_LINE, ex.HIDDEN_LINE, ex.MD_SOLUTION_LINE)
    }
    assert expected <= secrets
    blob = "\n".join(f.read_text("utf-8", errors="replace") for f in site.rglob("*") if f.is_file())
    for marker in ("example-solution-line", "example-hidden-check", "six, times seven"):
        assert marker not in blob
    assert find_leaks([paths.labs / "example-lab" / "example-lab.ipynb"], site) == []


def test_leak_finder_sees_through_highlighted_html(tiny, tmp_path):
    paths, site = tiny
    planted = tmp_path / "page.html"
    planted.write_text(
        '<pre><span class="k">assert</span> <span class="n">answer</span> + 1 == 43, '
        '<span class="s1">&#39;example-hidden-check&#39;</span></pre>'
    )
    leaks = find_leaks([paths.labs / "example-lab" / "example-lab.ipynb"], tmp_path)
    assert [leak.line for leak in leaks] == [ex.HIDDEN_LINE]


def test_navigation_search_math_and_offline_assets(tiny):
    _, site = tiny
    home = _html(site, "")
    for href in ("01-intro/", "labs/", "datasets/", "datasets/toy/", "getting-started/"):
        assert f'href="{href}"' in home, href
    assert ASSET_TAG.findall(home) == []
    assert find_external_assets(site) == []
    assert (site / "assets" / "vendor" / "katex" / "katex.min.js").is_file()
    assert list((site / "assets" / "vendor" / "katex" / "fonts").glob("*.woff2"))
    assert 'src="assets/vendor/katex/katex.min.js"' in home
    assert "Module 1: First steps" in (site / "search" / "search_index.json").read_text()
    # math is marked up for KaTeX on the lab's page
    assert 'class="arithmatex"' in _html(site, "01-intro")


def test_dataset_card_links_outside_the_site_become_text(tiny):
    _, site = tiny
    page = _html(site, "datasets")
    assert 'href="toy/"' in page
    assert "core.py" in page and 'core.py"' not in page


def test_external_assets_are_detected(tmp_path):
    (tmp_path / "a.html").write_text(
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">'
        '<script src="//cdn.example.com/x.js"></script><a href="https://example.org">ok</a>'
    )
    (tmp_path / "b.css").write_text("@font-face{src:url(https://cdn.example.com/f.woff2)}")
    found = sorted(u for _, u in find_external_assets(tmp_path))
    assert found == [
        "//cdn.example.com/x.js",
        "https://cdn.example.com/f.woff2",
        "https://fonts.googleapis.com/css?family=Roboto",
    ]


def test_new_module_folder_appears_without_touching_site_code(tmp_path):
    paths = make_course(tmp_path)
    (paths.courses / "02-new-topic").mkdir()
    (paths.courses / "02-new-topic" / "index.md").write_text("# Module 2: New topic\n\nHi.\n")
    (paths.courses / "02-new-topic" / "more.md").write_text("# More on it\n\nText.\n")
    result = build_site(tmp_path / "site", paths)
    home = _html(result.out, "")
    assert 'href="02-new-topic/"' in home and 'href="02-new-topic/more/"' in home
    assert home.index('href="01-intro/"') < home.index('href="02-new-topic/"')
    # a lab no module claims gets its own page under Labs
    ex.write_example_lab(paths.labs, lab_id="second-lab", title="Second lab")
    build_site(tmp_path / "site", paths)
    assert "Second lab" in _html(tmp_path / "site", "labs/second-lab")


def test_broken_link_fails_strict_build_and_keeps_previous_site(tmp_path):
    paths = make_course(tmp_path)
    out = tmp_path / "site"
    build_site(out, paths)
    before = (out / "index.html").read_text()
    (paths.courses / "01-intro" / "broken.md").write_text("# Broken\n\nSee [this](nowhere.md).\n")
    with pytest.raises(SiteBuildError, match=r"broken\.md.*nowhere\.md"):
        build_site(out, paths)
    assert (out / MARKER).exists() and (out / "index.html").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".site")] == []


def test_solution_pasted_into_course_text_stops_the_build(tmp_path):
    paths = make_course(tmp_path)
    page = paths.courses / "01-intro" / "index.md"
    page.write_text(page.read_text() + f"\n```python\n{ex.SOLUTION_LINE}\n```\n")
    with pytest.raises(SiteBuildError, match="solution or hidden-test text reached the site"):
        build_site(tmp_path / "site", paths)
    assert not (tmp_path / "site").exists()


def test_solution_in_a_released_lab_file_stops_the_build(tmp_path):
    """nbgrader releases every file of a lab folder; the .zip download must not carry secrets."""
    paths = make_course(tmp_path)
    (paths.labs / "example-lab" / "notes.txt").write_text(f"answer key: {ex.SOLUTION_LINE}\n")
    with pytest.raises(SiteBuildError, match=r"student/example-lab/notes\.txt"):
        build_site(tmp_path / "site", paths)


def test_refuses_to_replace_a_folder_it_did_not_build(tmp_path):
    paths = make_course(tmp_path)
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.docx").write_text("keep me")
    with pytest.raises(SiteBuildError, match="not a site built by medai"):
        build_site(out, paths)
    assert (out / "thesis.docx").read_text() == "keep me"


def test_bad_lab_folder_and_unknown_claim_are_clear_errors(tmp_path):
    paths = make_course(tmp_path)
    page = paths.courses / "01-intro" / "index.md"
    page.write_text(page.read_text().replace("[example-lab]", "[example-lab, no-such-lab]"))
    with pytest.raises(SiteBuildError, match=r"01-intro/index\.md \(no-such-lab\)"):
        build_site(tmp_path / "site", paths)
    page.write_text(page.read_text().replace(", no-such-lab", ""))
    shutil.copytree(paths.labs / "example-lab", paths.labs / "Bad Name")
    with pytest.raises(Exception, match="not a valid lab id"):
        build_site(tmp_path / "site", paths)


# ---------------------------------------------------------------------------------------------
# The repository's own site, built as a user would.


def test_cli_builds_the_repository_site(tmp_path):
    from medai.cli import app

    out = tmp_path / "site"
    result = CliRunner().invoke(app, ["site", "build", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"built {out}" in result.output
    for page in ("getting-started", "instructors", "operators", "reference/course-config"):
        assert (out / page / "index.html").is_file(), page
    for card in sorted((REPO / "datasets" / "synthetic").glob("*.md")):
        name = "" if card.name == "README.md" else card.stem
        assert (out / "datasets" / name / "index.html").is_file(), card
    instructors = _html(out, "instructors")
    for cmd in ("medai up", "/formgrader", "medai grade", "medai grades export"):
        assert cmd in instructors
    operators = _html(out, "operators")
    assert "make up" in operators and "helm/" in operators
    for f in out.rglob("*.html"):
        assert ASSET_TAG.findall(f.read_text("utf-8")) == [], f
    labs = discover_labs(REPO / "labs")
    for lab in labs:
        for nb in lab.notebooks:
            assert (out / "downloads" / lab.id / nb).is_file()
    sources = [lab.source_dir / nb for lab in labs for nb in lab.notebooks]
    assert find_leaks(sources, out) == []


def test_cli_errors_are_short_and_actionable(tmp_path):
    from medai.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["site", "serve", "--no-build", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0
    assert "error:" in result.stderr and "medai site build" in result.stderr
    result = runner.invoke(
        app, ["site", "build", "--out", str(tmp_path / "s"), "--config", str(tmp_path / "no.yaml")]
    )
    assert result.exit_code != 0
    assert "error:" in result.stderr and "no such file" in result.stderr
    assert not (tmp_path / "s").exists()


def test_a_second_course_folder_gets_its_own_section_after_the_modules(tmp_path):
    paths = make_course(tmp_path)
    course2 = paths.courses / "course-2"
    (course2 / "07-next").mkdir(parents=True)
    (course2 / "index.md").write_text("# Course 2: Further on\n\nThe second course.\n")
    (course2 / "07-next" / "index.md").write_text("# Module 7: Next\n\nText.\n")
    (paths.courses / "instructors.md").write_text("# Instructor guide\n\nText.\n")
    result = build_site(tmp_path / "site", paths)
    home = _html(result.out, "")
    assert 'href="course-2/07-next/"' in home and 'href="course-2/"' in home
    # after course 1's modules, before the guides (not with the leftover folders at the end)
    assert home.index('href="01-intro/"') < home.index('href="course-2/"')
    assert home.index('href="course-2/07-next/"') < home.index('href="instructors/"')
    assert "Course 2: Further on" in home
