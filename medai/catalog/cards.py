"""The catalogue's cards as plain data: what a dataset or a model is, for whom, and how good.

Every card is a pydantic model whose fields carry their meaning (``description=``), stored as
JSON beside what it describes and rendered to Markdown by :mod:`medai.catalog.render`. A model
card follows the headings of Mitchell et al., *Model Cards for Model Reporting* (FAT* 2019):
intended use, data, metrics overall and per subgroup, and here also the release checks it
passed before it was put in the catalogue.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CARD_FILE = "card.json"
MODEL_FILE = "model.skops"


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(
            f"{what} {name!r} is not a catalogue name: use 1-64 lower-case letters, digits, '-' "
            "or '_', starting with a letter or digit"
        )
    return name


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Models


class SubgroupMetrics(_Card):
    """The model's metrics on one subgroup of the evaluation patients."""

    attribute: str = Field(description="What the patients are grouped by, e.g. 'sex' or 'region'.")
    group: str = Field(description="The subgroup's value of that attribute, e.g. 'F'.")
    n: int = Field(ge=0, description="Evaluation patients in the subgroup.")
    positives: int = Field(ge=0, description="Of them, patients with the outcome.")
    metrics: dict[str, float | None] = Field(
        description="Metric name -> value; None where it is undefined (e.g. AUROC of a subgroup "
        "with no event)."
    )


class ReleaseCheck(_Card):
    """One check the model passed (or failed) before it entered the catalogue."""

    name: str = Field(description="Short name of the check.")
    passed: bool = Field(description="Whether the model passed it.")
    detail: str = Field(description="What was checked and the figure it was judged on.")


class ModelData(_Card):
    """Where the model's training and evaluation data came from."""

    dataset: str = Field(description="Catalogue name of the dataset.")
    access: Literal["public", "sandboxed"] = Field(
        description="public: synthetic data every trainee reads; sandboxed: private data the "
        "model was trained on inside the data sandbox, never seen by its author."
    )
    recipe: str = Field(description="How to obtain the same data (a command or a description).")
    target: str = Field(description="The outcome the model predicts.")
    features: list[str] = Field(description="Input columns, in the order the model takes them.")
    training: str = Field(description="Which rows the model was fitted on.")
    evaluation: str = Field(description="Which rows the metrics below were computed on.")
    n_train: int = Field(ge=0, description="Rows fitted on.")
    n_eval: int = Field(ge=0, description="Rows evaluated on.")


class ModelCard(_Card):
    """A model of the catalogue: a folder with ``model.skops`` and this card as ``card.json``."""

    card_version: Literal[1] = Field(1, description="Version of this card format.")
    name: str = Field(description="Catalogue name; also the folder name and `load_model(name)`.")
    title: str = Field(description="One line a trainee recognises the model by.")
    kind: Literal["reference", "released"] = Field(
        description="reference: trained by the course from public synthetic data (`medai "
        "models build`); released: trained in the data sandbox and let out after its checks."
    )
    version: str = Field(
        description="Version of the model (a new build with other data or code gets a new one)."
    )
    author: str = Field(description="Who trained it: 'course' or the trainee's account.")
    summary: str = Field(description="What it does, in a sentence or two.")
    intended_use: str = Field(description="What the model is for.")
    not_for: list[str] = Field(description="Uses it must not be put to.")
    algorithm: str = Field(description="The estimator and its settings.")
    data: ModelData
    threshold: float | None = Field(
        None, description="Risk threshold of the threshold metrics (sensitivity, ...)."
    )
    metrics: dict[str, float | None] = Field(description="Metrics on all evaluation rows.")
    subgroups: list[SubgroupMetrics] = Field(description="The same metrics per subgroup.")
    release_checks: list[ReleaseCheck] = Field(description="Checks run before release.")
    limitations: list[str] = Field(description="What the figures do not show.")
    module: str | None = Field(None, description="Course module the model belongs to, if any.")
    file: str = Field(MODEL_FILE, description="The model file, in skops format (never pickle).")
    sha256: str = Field(description="SHA-256 of the model file; `load_model` checks it.")
    created: datetime | None = Field(
        None,
        description="When it was released (sandbox); None for reference models, whose "
        "cards must be the same at every build.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "model name")

    @field_validator("file")
    @classmethod
    def _file(cls, v: str) -> str:
        if "/" in v or "\\" in v or v.startswith(".") or not v.endswith(".skops"):
            raise ValueError(f"model file {v!r} must be a plain '*.skops' name in the folder")
        return v

    def subgroup(self, attribute: str, group: str) -> SubgroupMetrics:
        for s in self.subgroups:
            if s.attribute == attribute and s.group == group:
                return s
        raise KeyError(f"{self.name}: no subgroup {attribute}={group}")


# ---------------------------------------------------------------------------------------------
# Datasets


class AccessGrant(_Card):
    """A trainee's access to a sandboxed dataset."""

    user: str = Field(description="The trainee's account.")
    until: datetime | None = Field(None, description="End of the access (None: no end).")
    purpose: str = Field("", description="The purpose the trainee stated.")


class Column(_Card):
    name: str
    type: str = Field(description="Data type, e.g. 'int', 'float', 'category', 'date'.")
    description: str = ""


class SandboxedDataset(_Card):
    """A private dataset as the catalogue shows it: everything about it except its rows.

    The sandbox service (``medai.sandbox``) owns these; this is the shape the catalogue needs.
    ``mock_path`` is where trainees read the mock twin; the private files have no field here,
    so no catalogue page can name them.
    """

    name: str
    title: str
    summary: str
    card: str = Field("", description="The dataset card, Markdown.")
    columns: list[Column] = Field(default_factory=list, description="Schema (mock and private).")
    mock_path: str = Field(description="The mock twin inside a trainee's server.")
    policy: str = Field(description="The release policy in a sentence (rules, thresholds).")
    access: list[AccessGrant] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "dataset name")

    @field_validator("mock_path")
    @classmethod
    def _mock_path(cls, v: str) -> str:
        if not v.startswith("/") or ".." in v.split("/"):
            raise ValueError(
                f"mock_path {v!r} must be an absolute path inside a trainee's server without "
                "'..' (e.g. /data/<name>-mock)"
            )
        return v


class DatasetEntry(_Card):
    """One line of the catalogue's dataset table (public or sandboxed)."""

    name: str
    kind: Literal["public", "sandboxed"]
    title: str
    summary: str
    size: str = Field(description="Default size, e.g. '10,000 patients' ('' if unknown).")
    formats: list[str] = Field(default_factory=list)
    location: str = Field(description="Where a trainee's code reads it, inside their server.")
    access: str = Field(description="'everyone', or how access to a sandboxed dataset is given.")
    card: str = Field("", description="The dataset card, Markdown.")
    card_source: str | None = Field(None, description="File the card was read from.")
    columns: list[Column] = Field(default_factory=list)
    policy: str = ""
    grants: list[AccessGrant] = Field(
        default_factory=list,
        description="Who has access until when (sandboxed). Staff views only: the pages "
        "served to trainees show how many, not who.",
    )
