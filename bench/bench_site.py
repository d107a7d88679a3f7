"""Benchmark the course site: full build time and size, and the cost of one lab page.

Run: ``.venv/bin/python bench/bench_site.py [--repeat N]``. Prints figures; asserts nothing.

- full build: ``build_site`` on this checkout (courses/, every lab, dataset cards, KaTeX),
  strict MkDocs build and the offline and leak checks included; median of N runs.
- one lab page: nbgrader's student version, nbconvert to Markdown, then Python-Markdown with the
  site's extensions to HTML (what MkDocs does for that page), for the first lab in labs/.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import markdown
import yaml

from medai.config import load_config
from medai.site.build import SitePaths, build_site
from medai.site.labs import discover_labs, generate_student_version, notebook_markdown


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    args = parser.parse_args()
    paths = SitePaths()

    with tempfile.TemporaryDirectory(prefix="bench-site-") as tmp:
        times, result = [], None
        for i in range(args.repeat):
            result, s = _timed(lambda i=i: build_site(Path(tmp) / f"site{i}", paths))
            times.append(s)
        assert result is not None
        print(f"full site build: median {statistics.median(times):.2f} s over {args.repeat} runs")
        for step, s in result.timings.items():
            print(f"  {step:<8} {s:.2f} s (last run)")
        print(f"  {result.pages} HTML pages, {len(result.labs)} lab(s)")
        print(f"  size {result.size_bytes / 1e6:.2f} MB")

        labs = discover_labs(paths.labs, load_config(paths.config))
        if not labs:
            print("one lab page: no lab in labs/")
            return
        lab = labs[0]
        cfg = yaml.safe_load((paths.site / "mkdocs.yml").read_text())
        exts, ext_cfg = [], {}
        for e in cfg["markdown_extensions"]:
            name, conf = (e, None) if isinstance(e, str) else next(iter(e.items()))
            exts.append(name)
            if conf:
                ext_cfg[name] = conf
        stud, md, html = [], [], []
        for i in range(args.repeat):
            nbs, s = _timed(lambda i=i: generate_student_version(lab, Path(tmp) / f"s{i}"))
            stud.append(s)
            text, s = _timed(lambda nbs=nbs: "\n".join(notebook_markdown(nb) for nb in nbs))
            md.append(s)
            conv = markdown.Markdown(extensions=exts, extension_configs=ext_cfg)
            _, s = _timed(lambda conv=conv, text=text: conv.convert(text))
            html.append(s)
        total = statistics.median(stud) + statistics.median(md) + statistics.median(html)
        print(f"one lab page ({lab.id}): median {total:.3f} s")
        print(f"  student version (nbgrader)  {statistics.median(stud):.3f} s")
        print(f"  notebook -> Markdown        {statistics.median(md):.3f} s")
        print(f"  Markdown -> HTML            {statistics.median(html):.3f} s")


if __name__ == "__main__":
    main()
