"""The grading policy (``autograder/policy.yaml``): limits, tamper rule, late policy, extensions."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medai.autograder import GradingError
from medai.autograder.sandbox import Limits

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "autograder" / "policy.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitsModel(_Strict):
    wall_s: float = Field(120, gt=0)
    cpu_s: int = Field(120, gt=0)
    memory_mb: int = Field(3072, ge=256)
    processes: int = Field(64, ge=8)
    file_size_mb: int = Field(64, gt=0)
    scratch_mb: int = Field(256, gt=0)
    open_files: int = Field(256, ge=32)
    log_kb: int = Field(256, gt=0)
    result_mb: int = Field(64, gt=0)

    def to_limits(self) -> Limits:
        return Limits(**self.model_dump())


class SubmissionModel(_Strict):
    notebook_mb: float = Field(10, gt=0)
    extra_files: Literal["ignore"] = "ignore"


class LateModel(_Strict):
    policy: Literal["none", "zero", "percent_per_day"] = "percent_per_day"
    percent_per_day: float = Field(10, ge=0, le=100)
    cap_percent: float = Field(50, ge=0, le=100)
    grace_minutes: float = Field(5, ge=0)


class Policy(_Strict):
    limits: LimitsModel = LimitsModel()
    submission: SubmissionModel = SubmissionModel()
    on_tamper: Literal["zero", "restore"] = "zero"
    late: LateModel = LateModel()
    due: dict[str, dt.datetime] = Field(default_factory=dict)
    extensions: dict[str, dict[str, float]] = Field(default_factory=dict)

    def late_fraction(self, student: str, lab: str, seconds_late: float) -> float:
        """Share of the autograded score removed for a submission ``seconds_late`` after the due
        date (before the student's extension for ``lab`` is applied)."""
        seconds_late -= self.extensions.get(student, {}).get(lab, 0.0) * 3600
        seconds_late -= self.late.grace_minutes * 60
        if seconds_late <= 0 or self.late.policy == "none":
            return 0.0
        if self.late.policy == "zero":
            return 1.0
        days = math.ceil(seconds_late / 86400)
        return min(self.late.cap_percent, days * self.late.percent_per_day) / 100.0


def load_policy(path: Path | str | None = None) -> Policy:
    """Read ``path`` (default: autograder/policy.yaml of the checkout, else built-in defaults)."""
    if path is None:
        if not DEFAULT_POLICY.exists():
            return Policy()
        path = DEFAULT_POLICY
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise GradingError(f"policy file {path} not found") from None
    except yaml.YAMLError as exc:
        raise GradingError(f"{path} is not valid YAML: {exc}") from None
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:10]]
        raise GradingError(f"{path} is not a valid grading policy:\n" + "\n".join(lines)) from None
