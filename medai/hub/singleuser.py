"""``jupyterhub-singleuser`` as every user server runs it, less one parser built at each start.

jsonschema (through jupyter_events, which every Jupyter server imports) imports the optional
``rfc3987_syntax`` package when it is installed, and that package compiles three Earley
grammars with Lark at import time: about a second of CPU, longer on a busy machine, in every
server start (upstream: python-jsonschema/jsonschema#1428). Without it jsonschema merely skips
the ``iri``/``iri-reference`` format checks, which no schema a Jupyter server loads uses. So
the import is refused here, before jupyterhub.singleuser loads, and everything else is
JupyterHub's own entry point.
"""

from __future__ import annotations

import sys


def main() -> int | None:
    # None in sys.modules makes `import rfc3987_syntax` raise ImportError, which jsonschema
    # handles by leaving those two formats unchecked.
    sys.modules.setdefault("rfc3987_syntax", None)
    from jupyterhub.singleuser import main as singleuser_main

    return singleuser_main()


if __name__ == "__main__":
    sys.exit(main())
