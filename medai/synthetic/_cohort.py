"""The latent chronic-disease population shared by the ``ehr``, ``multisite`` and ``survival`` sets.

Everything here is the *truth* from which observed records are drawn: people, their true
(noise-free) risk factors and the planted outcome model. Values are chosen to look plausible for
an adult primary-care population; they are teaching values, not estimates for any real place.

Planted causal structure (directed: left causes right)::

    age, sex, region, smoking, BMI  ->  diabetes, hypertension
    diabetes, hypertension, age     ->  blood pressure, HbA1c, kidney function (eGFR), albuminuria
    all of the above (+ treatment)  ->  chronic kidney disease (CKD) and stroke within 5 years

The outcome model is logistic; its coefficients (:data:`CKD_LOGIT`, :data:`STROKE_LOGIT`) are
the true effect sizes, written to each dataset's hidden ``effects.json`` and to its card.

eGFR is computed from creatinine with the race-free CKD-EPI 2021 equation (Inker et al., N Engl
J Med 2021;385:1737-49).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGIONS: tuple[str, ...] = ("urban", "rural", "under_resourced")
SMOKING: tuple[str, ...] = ("never", "former", "current")

# True log-odds coefficients of the 5-year outcome models (per unit of the named term).
CKD_LOGIT: dict[str, float] = {
    "intercept": -3.0,
    "diabetes": float(np.log(2.0)),
    "hypertension": float(np.log(1.8)),
    "age_per_10y": 0.20,  # (age - 60) / 10
    "egfr_per_10": -0.60,  # (true eGFR - 90) / 10, mL/min/1.73m2
    "log_acr": 0.65,  # ln(true urine albumin/creatinine ratio, mg/mmol)
    "hba1c_above_7": 0.25,  # max(true HbA1c - 7, 0), %
    "current_smoker": float(np.log(1.3)),
    "ace_inhibitor": float(np.log(0.8)),
}
STROKE_LOGIT: dict[str, float] = {
    "intercept": -3.9,
    "hypertension": float(np.log(2.0)),
    "diabetes": float(np.log(1.6)),
    "age_per_10y": 0.55,
    "sbp_per_10": 0.25,  # (true systolic BP - 130) / 10, mmHg
    "current_smoker": float(np.log(1.8)),
    "male": float(np.log(1.3)),
    "statin": float(np.log(0.8)),
}


@dataclass(frozen=True)
class CaseMix:
    """How a population differs from the default (used for hospitals of the ``multisite`` set)."""

    age_mean: float = 60.0
    age_sd: float = 11.0
    region_p: tuple[float, float, float] = (0.6, 0.25, 0.15)
    bmi_shift: float = 0.0
    diabetes_shift: float = 0.0  # added to the diabetes log-odds
    hypertension_shift: float = 0.0


def sample_people(
    rng: np.random.Generator, m: int, mix: CaseMix = CaseMix()
) -> dict[str, np.ndarray]:
    """Draw ``m`` people's true characteristics (vectorised)."""
    age = np.clip(rng.normal(mix.age_mean, mix.age_sd, m), 35, 90)
    male = rng.random(m) < 0.48
    region = rng.choice(3, size=m, p=np.asarray(mix.region_p) / sum(mix.region_p))
    # smoking: more current smokers outside cities
    u = rng.random(m)
    p_current = np.array([0.14, 0.20, 0.26])[region]
    p_former = np.array([0.25, 0.24, 0.20])[region]
    smoking = np.where(u < p_current, 2, np.where(u < p_current + p_former, 1, 0))
    bmi = np.clip(
        rng.normal(27.3 + mix.bmi_shift + np.array([0.0, 0.6, 1.2])[region], 4.6, m), 16, 55
    )
    age10 = (age - 60) / 10
    dm_logit = -2.05 + 0.45 * age10 + 0.14 * (bmi - 27) + 0.35 * (region == 2) + mix.diabetes_shift
    diabetes = rng.random(m) < _expit(dm_logit)
    htn_logit = (
        -0.75 + 0.65 * age10 + 0.10 * (bmi - 27) + 0.4 * diabetes + 0.2 * (smoking == 2)
    ) + mix.hypertension_shift
    hypertension = rng.random(m) < _expit(htn_logit)
    hba1c = np.where(
        diabetes, rng.normal(7.6, 1.2, m), rng.normal(5.35 + 0.02 * (bmi - 27), 0.35, m)
    )
    hba1c = np.clip(hba1c, 4.0, 14.0)
    sbp = 121 + 4.0 * age10 + 0.5 * (bmi - 27) + 17 * hypertension + rng.normal(0, 10, m)
    dbp = 0.45 * sbp + 18 + rng.normal(0, 6, m)
    egfr = np.clip(
        96 - 7.0 * age10 - 5.0 * diabetes - 4.0 * hypertension + rng.normal(0, 12, m), 30, 125
    )
    log_acr = rng.normal(-0.2 + 0.9 * diabetes + 0.5 * hypertension - 0.02 * (egfr - 90), 0.8, m)
    chol = rng.normal(5.2 + 0.03 * (bmi - 27) - 0.2 * diabetes, 0.9, m).clip(2.5, 10)
    hr = rng.normal(72 + 0.3 * (bmi - 27) + 3 * (smoking == 2), 9, m).clip(40, 140)
    height = np.where(male, rng.normal(176, 7, m), rng.normal(163, 6.5, m))
    weight = bmi * (height / 100) ** 2
    return {
        "age": age,
        "male": male,
        "region": region,
        "smoking": smoking,
        "bmi": bmi,
        "diabetes": diabetes,
        "hypertension": hypertension,
        "hba1c": hba1c,
        "sbp": sbp,
        "dbp": dbp,
        "egfr": egfr,
        "log_acr": log_acr,
        "chol": chol,
        "hr": hr,
        "height": height,
        "weight": weight,
    }


def ckd_terms(p: dict[str, np.ndarray], ace_inhibitor: np.ndarray) -> dict[str, np.ndarray]:
    """The design columns of the CKD model, named as in :data:`CKD_LOGIT`."""
    return {
        "diabetes": p["diabetes"].astype(float),
        "hypertension": p["hypertension"].astype(float),
        "age_per_10y": (p["age"] - 60) / 10,
        "egfr_per_10": (p["egfr"] - 90) / 10,
        "log_acr": p["log_acr"],
        "hba1c_above_7": np.maximum(p["hba1c"] - 7, 0),
        "current_smoker": (p["smoking"] == 2).astype(float),
        "ace_inhibitor": ace_inhibitor.astype(float),
    }


def stroke_terms(p: dict[str, np.ndarray], statin: np.ndarray) -> dict[str, np.ndarray]:
    """The design columns of the stroke model, named as in :data:`STROKE_LOGIT`."""
    return {
        "hypertension": p["hypertension"].astype(float),
        "diabetes": p["diabetes"].astype(float),
        "age_per_10y": (p["age"] - 60) / 10,
        "sbp_per_10": (p["sbp"] - 130) / 10,
        "current_smoker": (p["smoking"] == 2).astype(float),
        "male": p["male"].astype(float),
        "statin": statin.astype(float),
    }


def linear_predictor(coef: dict[str, float], terms: dict[str, np.ndarray]) -> np.ndarray:
    lp = np.full(len(next(iter(terms.values()))), coef["intercept"])
    for k, v in terms.items():
        lp = lp + coef[k] * v
    return lp


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


expit = _expit


# --- CKD-EPI 2021 (creatinine, race-free) --------------------------------------------------------


def _ckd_epi_const(age: np.ndarray, male: np.ndarray) -> tuple[np.ndarray, ...]:
    kappa = np.where(male, 0.9, 0.7)
    alpha = np.where(male, -0.302, -0.241)
    c = 142.0 * 0.9938**age * np.where(male, 1.0, 1.012)
    return kappa, alpha, c


def egfr_from_creatinine(scr_mg_dl: np.ndarray, age: np.ndarray, male: np.ndarray) -> np.ndarray:
    """eGFR (mL/min/1.73m2) from serum creatinine (mg/dL): CKD-EPI 2021."""
    kappa, alpha, c = _ckd_epi_const(age, male)
    r = scr_mg_dl / kappa
    return c * np.minimum(r, 1) ** alpha * np.maximum(r, 1) ** -1.200


def creatinine_from_egfr(egfr: np.ndarray, age: np.ndarray, male: np.ndarray) -> np.ndarray:
    """Inverse of :func:`egfr_from_creatinine` (serum creatinine in mg/dL)."""
    kappa, alpha, c = _ckd_epi_const(age, male)
    q = egfr / c
    r = np.where(q >= 1, q ** (1 / alpha), q ** (1 / -1.200))
    return r * kappa
