"""The private cohort of the data sandbox and its mock twin.

Both are one table of patients with the same schema (:data:`SCHEMA`). The private one is drawn
from streams keyed by the deployment's data secret (:meth:`GenContext.hidden_rng`, HMAC-SHA256 of
the key), so no trainee can regenerate it from anything public; the mock is drawn from a public
seed with the same code and is freely readable.

Canaries are planted in the private data only: patients whose identifier, exact values and
clinical note are derived from the secret (:func:`canaries`). They are ordinary rows to any
analysis; tests look for them in everything that leaves the sandbox.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from medai.synthetic.core import DatasetSpec, GenContext

REGIONS = ("urban", "rural", "remote")
SEXES = ("F", "M")
SMOKING = ("never", "former", "current")

# name, type, role, description. role: identifier (never released, never grouped by),
# category (its values are public vocabulary), numeric, outcome, text (never released).
SCHEMA: tuple[tuple[str, str, str, str], ...] = (
    ("patient_id", "string", "identifier", "Pseudonymous patient identifier"),
    ("age", "int", "numeric", "Age at baseline, years (18-104)"),
    ("sex", "category", "category", "F or M"),
    ("region", "category", "category", "urban, rural or remote"),
    ("smoking", "category", "category", "never, former or current"),
    ("bmi", "float", "numeric", "Body-mass index, kg/m2, one decimal"),
    ("sbp", "int", "numeric", "Systolic blood pressure, mm Hg"),
    ("hba1c", "float", "numeric", "HbA1c, %, one decimal"),
    ("diabetes", "int", "outcome", "Diabetes at baseline (0/1)"),
    ("stroke_5y", "int", "outcome", "Stroke within five years (0/1)"),
    ("note", "string", "text", "Free-text clinic note"),
)
COLUMNS = [c[0] for c in SCHEMA]
CATEGORIES = {"sex": SEXES, "region": REGIONS, "smoking": SMOKING}
NUMERIC = [c[0] for c in SCHEMA if c[2] in ("numeric", "outcome")]
IDENTIFIERS = [c[0] for c in SCHEMA if c[2] == "identifier"]
TEXT = [c[0] for c in SCHEMA if c[2] == "text"]

N_CANARIES = 3
_NOTES = (
    "routine review, no new complaints",
    "blood pressure discussed, lifestyle advice given",
    "medication reviewed, continue current plan",
    "attended with family member, questions answered",
)
_SPEC = DatasetSpec(
    name="sandbox-cohort", summary="", default_n=2000, formats=("parquet",), write=lambda ctx: None
)


@dataclass(frozen=True)
class Canary:
    """A planted patient: an identifier, exact values and a marker string in its note."""

    patient_id: str
    age: int
    bmi: float
    sbp: int
    marker: str


def _draw(rng: np.random.Generator, n: int, id_prefix: str) -> pd.DataFrame:
    age = np.clip(np.round(rng.normal(58, 14, n)), 18, 95).astype(int)
    sex = rng.choice(SEXES, n)
    region = rng.choice(REGIONS, n, p=[0.6, 0.3, 0.1])
    smoking = rng.choice(SMOKING, n, p=[0.55, 0.3, 0.15])
    bmi = np.round(np.clip(rng.normal(27.5, 4.8, n), 15, 55), 1)
    sbp = np.round(
        np.clip(110 + 0.45 * (age - 40) + 0.6 * (bmi - 25) + rng.normal(0, 14, n), 85, 210)
    ).astype(int)
    hba1c = np.round(np.clip(rng.normal(5.6 + 0.04 * (bmi - 25), 0.8, n), 4.0, 13.0), 1)
    diabetes = (hba1c >= 6.5).astype(int)
    logit = (
        -3.6
        + 0.055 * (age - 50)
        + 0.028 * (sbp - 130)
        + 0.7 * diabetes
        + 0.5 * (smoking == "current")
        + 0.3 * (region == "remote")
    )
    stroke = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    ids = rng.choice(10**8, n, replace=False)
    return pd.DataFrame(
        {
            "patient_id": [f"{id_prefix}{i:08d}" for i in ids],
            "age": age,
            "sex": sex,
            "region": region,
            "smoking": smoking,
            "bmi": bmi,
            "sbp": sbp,
            "hba1c": hba1c,
            "diabetes": diabetes,
            "stroke_5y": stroke,
            "note": rng.choice(_NOTES, n),
        }
    )


def canaries(secret: bytes, n: int = N_CANARIES) -> list[Canary]:
    """The canaries of the private cohort drawn with ``secret`` (trusted code and tests only)."""
    out = []
    for i in range(n):
        h = hashlib.sha256(secret + b"medai-sandbox-canary-v1" + bytes([i])).digest()
        r = int.from_bytes(h[:8], "little")
        out.append(
            Canary(
                patient_id=f"CANARY-{h[8:12].hex().upper()}",
                age=97 + r % 8,  # 97-104: older than anyone else in the cohort
                bmi=round(57.03 + (r >> 8) % 300 / 100, 2),  # two decimals: nobody else has two
                sbp=211 + (r >> 20) % 30,  # above the cohort's clip
                marker=f"zebra-{h[12:20].hex()}",
            )
        )
    return out


def private_cohort(secret: bytes, n: int, *, name: str = "cohort") -> pd.DataFrame:
    """The private cohort: drawn from streams keyed by ``secret``; canaries planted."""
    ctx = GenContext(_SPEC, n, 0, "parquet", Path("."), Path("."), secret=secret)
    rng = ctx.hidden_rng("private", name)
    df = _draw(rng, n, "P")
    rows = rng.choice(n, N_CANARIES, replace=False)
    for row, c in zip(rows, canaries(secret), strict=True):
        df.loc[row, ["patient_id", "age", "bmi", "sbp"]] = [c.patient_id, c.age, c.bmi, c.sbp]
        df.loc[row, "note"] = f"patient reports {c.marker} symptoms"
    return df


def mock_cohort(seed: int, n: int, *, name: str = "cohort") -> pd.DataFrame:
    """The mock twin: same schema, values from the public ``seed`` (no canaries)."""
    ctx = GenContext(_SPEC, n, seed, "parquet", Path("."), Path("."))
    return _draw(ctx.rng("mock", name), n, "M")


def schema() -> list[dict]:
    """The schema as plain data (the catalogue shows it)."""
    out = []
    for col, typ, role, desc in SCHEMA:
        item = {"name": col, "type": typ, "role": role, "description": desc}
        if col in CATEGORIES:
            item["values"] = list(CATEGORIES[col])
        out.append(item)
    return out
