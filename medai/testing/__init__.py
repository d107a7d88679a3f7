"""Support for MedAI's own tests and benchmarks; nothing a trainee or the hub imports.

Everything here drives the real parts (nbgrader, the bubblewrap grader, papermill, the hub
through its proxy); it is kept out of the product packages so that the grader, the hub and the
site ship no test helpers. Some modules need the ``test`` extra (``pip install -e ".[test]"``).

- :mod:`medai.testing.course`       throwaway nbgrader courses: :func:`~.course.make_course`,
  :func:`~.course.submit`, :func:`~.course.solved`, :func:`~.course.grade` (the real batch in
  bubblewrap), :func:`~.course.lab_data_key`
- :mod:`medai.testing.labkit`       the lab test kit: one :class:`~.labkit.LabKit` per lab
  (answer variants, in-process runs, papermill verdicts, hidden-split scores, grading an honest
  and a naive submission)
- :mod:`medai.testing.hub`          a hub user over HTTP (login, server, kernel code) and the
  loopback transport for ``*.localhost`` (needs ``httpx``, of the ``test`` extra)
- :mod:`medai.testing.browser`      the headless Chromium the browser tests and benchmarks use
- :mod:`medai.testing.example_lab`  a tiny source lab with known secret lines, for site tests
"""
