"""Task kinds as units: one module per ``kind:`` of ``tasks.yaml``, looked up by that name.

Each module holds the kind's task model and one :class:`~medai.autograder.kinds.base.Kind` (public
check, what the sandbox records, trusted preparation and scoring, the reference's verdict); the
model's ``kind`` literal is the key here. Adding a kind is adding a module (and its tests).
Importing this package is cheap (kind modules import their libraries when called), so the
trainee's kernel loads it with :mod:`medai.autograder.lab`.
"""

from __future__ import annotations

from typing import Any

import medai.autograder.tasks  # noqa: F401 - the shared schema first: the kind modules use it
from medai.autograder.kinds.base import Kind, kind_units

__all__ = ["KINDS", "Kind", "kind_of"]

KINDS: dict[str, Kind] = {unit.name: unit for unit in kind_units()}


def kind_of(task: Any) -> Kind:
    """The unit of ``task`` (a validated task model), by its ``kind`` literal."""
    return KINDS[task.kind]
