"""Secure, parallel grading on top of nbgrader.

nbgrader stays the course's lifecycle and gradebook (generate, release, collect, formgrader,
feedback, export). This package replaces how a submission is executed and scored:

- :mod:`~medai.autograder.lab`      what trainees import: ``check("task-id", value)``
- :mod:`~medai.autograder.tasks`    the lab's task file (``tasks.yaml``), validated
- :mod:`~medai.autograder.plain`    plain JSON/npy values between the sandbox and the scorer
- :mod:`~medai.autograder.sanitize` restore graded cells from the gradebook, report tampering
- :mod:`~medai.autograder.sandbox`  one bubblewrap sandbox per submission (``SandboxBackend``)
- :mod:`~medai.autograder.runner`   runs inside the sandbox: executes the notebook's cells
- :mod:`~medai.autograder.kinds`    one module per task kind: public check, record, scoring
- :mod:`~medai.autograder.scoring`  the trusted scorer: tolerances, metrics, partial credit
- :mod:`~medai.autograder.policy`   limits, late policy, extensions: the policy file schema
- :mod:`~medai.autograder.steps`    the grading pipeline's named steps and ``GradeResult``
- :mod:`~medai.autograder.batch`    ``medai grade``: the parallel, resumable batch loop
- :mod:`~medai.autograder.export`   ``medai grades export``: grades to CSV
"""

from __future__ import annotations


class GradingError(Exception):
    """A grading request that cannot be served; the message says what, where and how to fix."""
