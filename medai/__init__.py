"""MedAI Lab: a hands-on training lab for AI in medicine.

Subpackages, one per concern:

- :mod:`medai.config`      the course configuration model (the single source of truth)
- :mod:`medai.hub`         the embedded JupyterHub (config builder, spawner, exchange, launcher)
- :mod:`medai.synthetic`   synthetic medical data generators
- :mod:`medai.autograder`  secure, parallel grading on top of nbgrader
- :mod:`medai.site`        the course site (MkDocs Material) and notebook checks
- :mod:`medai.sandbox`     "usable but invisible" data sandbox
"""

__version__ = "0.1.0"


def ensure_env_bin_on_path() -> None:
    """Put this environment's ``bin`` first on PATH, so the tools it installed (nbgrader,
    alembic, jupyterhub) are found even when the virtualenv is not activated."""
    import os
    import sys

    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
