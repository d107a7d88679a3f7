"""Leak check: no solution code and no hidden-test text may reach what readers can download.

The secret lines of a source notebook are the lines between nbgrader's ``BEGIN SOLUTION`` /
``END SOLUTION`` and ``BEGIN HIDDEN TESTS`` / ``END HIDDEN TESTS`` markers (and the whole source
of solution cells written without markers), minus any line the author also wrote in public
text, and minus lines too short or generic to reveal anything (one word of wrapped prose,
``import`` lines). The built site is searched for them as a reader would see it: HTML as text
(tags stripped, entities decoded, so highlighted code counts), the search index's text, and
every notebook's cell sources. Nothing here is a library's job, so the small scanner is written by hand.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import nbformat

# Short lines ("else:", "return x", "pass") and the single words of wrapped prose are common
# anywhere; only lines at least this long and of at least two words count as secrets.
MIN_SECRET_CHARS = 16
MIN_SECRET_WORDS = 2
# Import lines name libraries, not answers, and course text shows them freely.
_GENERIC = re.compile(r"^(from\s+[\w.]+\s+)?import\s")

_REGIONS = (
    ("### BEGIN SOLUTION", "### END SOLUTION"),
    ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
)
_MARKERS = {m for pair in _REGIONS for m in pair}


def _norm(line: str) -> str:
    return re.sub(r"\s+", " ", line).strip()


def _split_cell(source: str, whole_cell_secret: bool) -> tuple[list[str], list[str]]:
    """Return (secret lines, public lines) of one cell's source."""
    secret, public = [], []
    inside: str | None = None
    has_markers = any(m in source for m in _MARKERS)
    for raw in source.splitlines():
        line = raw.strip()
        if inside is None:
            begin = next((b for b, _ in _REGIONS if line.startswith(b)), None)
            if begin:
                inside = dict(_REGIONS)[begin]
                continue
            if whole_cell_secret and not has_markers:
                secret.append(raw)
            else:
                public.append(raw)
        elif line.startswith(inside):
            inside = None
        else:
            secret.append(raw)
    return secret, public


def secret_lines(source_notebook: Path) -> set[str]:
    """Normalised solution and hidden-test lines of an nbgrader source notebook."""
    nb = nbformat.read(source_notebook, as_version=4)
    secret: set[str] = set()
    public: set[str] = set()
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        # nbgrader replaces a solution cell without markers entirely by the stub.
        s, p = _split_cell(cell.source, whole_cell_secret=bool(meta.get("solution")))
        secret.update(_norm(x) for x in s)
        public.update(_norm(x) for x in p)
    return {
        s
        for s in secret - public
        if len(s) >= MIN_SECRET_CHARS
        and len(re.findall(r"\w+", s)) >= MIN_SECRET_WORDS
        and not _GENERIC.match(s)
    }


class _TextOf(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def readable_text(path: Path) -> str:
    """What a reader of ``path`` sees (HTML as text, notebook sources, search-index text)."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix in (".html", ".htm"):
        parser = _TextOf()
        parser.feed(raw)
        return raw + "\n" + "".join(parser.parts)
    if path.suffix == ".ipynb":
        nb = nbformat.reads(raw, as_version=4)
        return "\n".join(c.source for c in nb.cells)
    if path.suffix == ".json":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            return raw
        texts: list[str] = []

        def walk(x: object) -> None:
            if isinstance(x, str):
                texts.append(html.unescape(re.sub(r"<[^>]+>", "", x)))
            elif isinstance(x, dict):
                for v in x.values():
                    walk(v)
            elif isinstance(x, list):
                for v in x:
                    walk(v)

        walk(data)
        return "\n".join(texts)
    return raw


# What content reaches: pages, the search index, notebooks, copied text. The theme's and
# KaTeX's scripts are not built from course content and are not searched.
TEXT_SUFFIXES = (".html", ".htm", ".md", ".ipynb", ".json", ".txt", ".py")


@dataclass(frozen=True)
class Leak:
    """A secret line found in a file a reader can get."""

    file: Path
    line: str
    source: Path

    def __str__(self) -> str:
        return f"{self.file}: contains a secret line of {self.source}: {self.line!r}"


def find_leaks(source_notebooks: Iterable[Path], search_dir: Path) -> list[Leak]:
    """Every (file, secret line) pair where a source notebook's secret appears under a folder."""
    secrets: dict[str, Path] = {}
    for nb in source_notebooks:
        for line in secret_lines(nb):
            secrets.setdefault(line, nb)
    if not secrets:
        return []
    leaks: list[Leak] = []
    for f in sorted(Path(search_dir).rglob("*")):
        if not f.is_file() or f.suffix not in TEXT_SUFFIXES:
            continue
        text = "\n".join(_norm(x) for x in readable_text(f).splitlines())
        for line, nb in secrets.items():
            if line in text:
                leaks.append(Leak(file=f, line=line, source=nb))
    return leaks
