"""Synthetic medical data: generators, dataset cards and a browsable catalogue.

``generate("ehr", root, n=4000, seed=1)`` writes ``root/public/ehr`` (what trainees see),
``root/hidden/ehr`` (held-out labels, for grading) and ``root/manifests/ehr.sha256``. The
catalogue is :data:`GENERATOR_MODULES`; each dataset's card is ``datasets/synthetic/<name>.md``.
See :mod:`medai.synthetic.core` for the contract every generator follows.
"""

from medai.synthetic.core import (
    GENERATOR_MODULES,
    DataError,
    DatasetSpec,
    GenContext,
    all_specs,
    available,
    card_path,
    check_request,
    generate,
    get_spec,
    verify,
)

__all__ = [
    "GENERATOR_MODULES",
    "DataError",
    "DatasetSpec",
    "GenContext",
    "all_specs",
    "available",
    "card_path",
    "check_request",
    "generate",
    "get_spec",
    "verify",
]
