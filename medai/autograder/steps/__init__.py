"""The grading pipeline as named steps, one module each, plain data between them.

In the order :func:`medai.autograder.batch.grade_lab` runs them:

- :mod:`~.layout`     the course's nbgrader folders and the grader's state (``Course``)
- :mod:`~.prepare`    once per lab: task file, gradebook cells, each kind's scoring state (``Lab``)
- :mod:`~.reference`  once per lab: the solution notebooks' recorded values (expected answers)
- :mod:`~.intake`     per submission: fingerprint, time, extra files, load and sanitize
- :mod:`~.execute`    per submission: one sandbox run; its records, validated (``Execution``)
- :mod:`~.score`      per submission: points and a reason for every graded cell
- :mod:`~.feedback`   per submission: autograded notebooks and the cell log
- :mod:`~.late`       per submission: the late deduction
- :mod:`~.gradebook`  per submission: notebooks, nbgrader gradebook, log, result file (last)
- :mod:`~.result`     the typed result every consumer reads (``GradeResult``)

This package imports nothing itself, so a caller that needs only the layout stays light.
"""
