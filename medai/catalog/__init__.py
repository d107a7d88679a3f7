"""The course catalogue ("data supermarket"): datasets (public, sandboxed) and models, with cards.

In a trainee's notebook::

    from medai.catalog import load_model, list_models
    model = load_model("stroke-risk-logistic")   # from $MEDAI_MODELS, read-only

On the host: ``medai data list`` (every dataset), ``medai models list|show|build``.
"""

from __future__ import annotations

from medai.catalog.models import ModelError, get_card, list_models, load_model

__all__ = ["ModelError", "get_card", "list_models", "load_model"]
