"""MedAI Lab: a hands-on training lab for AI in medicine.

Subpackages, one per concern:

- :mod:`medai.config`      the course configuration model (the single source of truth)
- :mod:`medai.hub`         the embedded JupyterHub (config builder, spawner, exchange, launcher)
- :mod:`medai.synthetic`   synthetic medical data generators
- :mod:`medai.autograder`  secure, parallel grading on top of nbgrader
- :mod:`medai.sandbox`     "usable but invisible" data sandbox
"""

__version__ = "0.1.0"
