"""Kubernetes mode: the helm chart's values from the course config, and grading as pods.

- :mod:`medai.k8s.values`  ``medai helm values COURSE.yaml``: the umbrella chart's values
- :mod:`medai.k8s.chart`   render ``helm/`` offline (helm-python-sdk) and validate the objects
- :mod:`medai.k8s.grading` the grader's Kubernetes sandbox backend (a Job per submission)
"""
