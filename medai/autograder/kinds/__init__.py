"""Task kinds as units: one module per ``kind:`` of ``tasks.yaml``, looked up by that name.

Each module holds one :class:`~medai.autograder.kinds.base.Kind` (public check, what the sandbox
records, trusted preparation and scoring, the reference's verdict). The task file's schema for
the kind is its pydantic model in :mod:`medai.autograder.tasks`, whose ``kind`` literal is the key
here. Importing this package is cheap (kind modules import their libraries when called), so the
trainee's kernel loads it with :mod:`medai.autograder.lab`.
"""

from __future__ import annotations

from typing import Any

from medai.autograder.kinds.base import Kind
from medai.autograder.kinds.function import FunctionKind
from medai.autograder.kinds.model import ModelKind
from medai.autograder.kinds.predict import PredictKind
from medai.autograder.kinds.property import PropertyKind
from medai.autograder.kinds.value import ValueKind

__all__ = ["KINDS", "Kind", "kind_of"]

KINDS: dict[str, Kind] = {
    k.name: k for k in (ValueKind(), FunctionKind(), PredictKind(), ModelKind(), PropertyKind())
}


def kind_of(task: Any) -> Kind:
    """The unit of ``task`` (a validated task model), by its ``kind`` literal."""
    return KINDS[task.kind]
