"""``python -m medai.k8s.prepare``: the course's state volume, prepared as ``medai up`` does.

The grading Deployment's init container runs it, as the trainees' uid (so the drop folders it
creates are theirs to write; a folder the kubelet made for a subPath would be root's), with
the embedded hub's own steps (:mod:`medai.hub.launcher`): the state tree and every member's
folders, the datasets (their hidden splits keyed by the deployment's data key, made once on
the volume), and the nbgrader course (gradebook roster, released labs). Each step keeps what is
already there, so a restart only adds what the course file added.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medai.config import ConfigError, load_config
from medai.hub.launcher import LaunchError, prepare_course, prepare_data, prepare_state


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, type=Path, help="the course configuration")
    ap.add_argument("--state", required=True, type=Path, help="where the state volume is")
    ap.add_argument(
        "--labs-root",
        default=Path("/opt/medai"),
        type=Path,
        help="folder the labs' `source` paths are relative to (the image's copy of labs/)",
    )
    a = ap.parse_args(argv)
    try:
        cfg = load_config(a.config)
        layout = prepare_state(cfg, a.state)
        prepare_data(cfg, layout)
        report = prepare_course(cfg, layout, a.labs_root)
    except (ConfigError, LaunchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for lab, why in report.failed.items():
        print(f"error: lab {lab}: {why}", file=sys.stderr)
    print(f"medai.k8s.prepare: {layout.root} ready; released {', '.join(report.released) or '-'}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
