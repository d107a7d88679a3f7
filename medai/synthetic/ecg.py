"""Single-lead ECG strips (10 s, 250 Hz) with rhythm labels.

Each beat is a sum of Gaussian waves (P, Q, R, S, T), the morphology used by the ECGSYN model
(McSharry et al., IEEE Trans Biomed Eng 2003;50:289-294). Beats are laid at explicit R-peak
times, which is what lets us control the rhythm:

* ``normal``  sinus rhythm, 60-100 bpm, small smooth beat-to-beat variation, P wave before QRS;
* ``brady``   sinus bradycardia, 38-58 bpm;
* ``tachy``   sinus tachycardia, 102-160 bpm;
* ``af``      atrial fibrillation: RR intervals drawn independently (irregularly irregular),
  no P waves, fibrillatory f-waves (4-9 Hz) on the baseline, ventricular rate 70-150 bpm.

Some sinus strips carry one premature ventricular beat (wide QRS, no P, compensatory pause) so
that a single irregular interval does not by itself mean AF. Noise: baseline wander, muscle
noise and 50 Hz mains hum.

Written by hand rather than with ``neurokit2.ecg_simulate``: neurokit2's ECGSYN draws its RR series
from a smooth 1 Hz spectral process (no beat-to-beat irregularity, so no AF), it cannot drop the
P wave, and its ODE solver needs about 0.1 s per strip. neurokit2 is the reference *analysis* tool
in the tests (R-peak detection).
"""

from __future__ import annotations

import numpy as np

from medai.synthetic._io import save_npz
from medai.synthetic.core import DatasetSpec, GenContext

FS = 250  # samples per second
DURATION_S = 10.0
CLASSES: tuple[str, ...] = ("normal", "af", "brady", "tachy")
PREVALENCE = np.array([0.45, 0.20, 0.15, 0.20])
RATE_BPM = {
    "normal": (60.0, 100.0),
    "af": (70.0, 150.0),
    "brady": (38.0, 58.0),
    "tachy": (102.0, 160.0),
}
PVC_PROB = 0.12  # share of sinus strips with one premature ventricular beat
TEST_FRACTION = 0.3

# (offset from R peak in s at RR = 1 s, amplitude in mV, Gaussian width in s); the P and T offsets
# scale with sqrt(RR) (shorter PR/QT at faster rates, after Bazett).
_WAVES = {
    "P": (-0.20, 0.15, 0.025),
    "Q": (-0.028, -0.12, 0.010),
    "R": (0.0, 1.10, 0.011),
    "S": (0.028, -0.25, 0.011),
    "T": (0.30, 0.30, 0.055),
}


def _beat(t: np.ndarray, rr: float, amp: np.ndarray, with_p: bool, pvc: bool) -> np.ndarray:
    s = np.sqrt(min(max(rr, 0.35), 1.6))
    out = np.zeros_like(t)
    for k, (name, (off, a, w)) in enumerate(_WAVES.items()):
        if name == "P" and not with_p:
            continue
        if name in ("P", "T"):
            off = off * s
        if pvc:  # wide, tall, discordant T
            if name in ("Q", "S", "R"):
                w *= 3.0
            if name == "T":
                a = -0.5
        out += a * amp[k] * np.exp(-0.5 * ((t - off) / w) ** 2)
    return out


def _r_peaks(cls: str, rate: float, rng: np.random.Generator) -> tuple[np.ndarray, int | None]:
    """R-peak times (s) covering the strip, and the index of a premature beat (or None)."""
    mean_rr = 60.0 / rate
    n = int(DURATION_S / mean_rr) + 4
    if cls == "af":
        cv = rng.uniform(0.12, 0.25)
        rr = rng.gamma(1 / cv**2, mean_rr * cv**2, n)  # independent intervals, CV 12-25%
        rr = np.clip(rr, 0.28, 2.0)
    else:
        ar = np.zeros(n)  # smooth variation (AR(1)) plus respiratory sinus arrhythmia
        for i in range(1, n):
            ar[i] = 0.8 * ar[i - 1] + rng.normal(0, 0.6)
        cv = rng.uniform(0.01, 0.03)
        rsa = np.sin(
            2 * np.pi * np.arange(n) * mean_rr * rng.uniform(0.2, 0.3) + rng.uniform(0, 6.3)
        )
        rr = mean_rr * (1 + cv * (ar / 1.7 + 0.6 * rsa))
    start = -rng.uniform(0, mean_rr)
    peaks = start + np.concatenate([[0.0], np.cumsum(rr)])
    pvc = None
    if cls != "af" and rng.random() < PVC_PROB:
        inside = np.flatnonzero((peaks > 1.5) & (peaks < DURATION_S - 1.5))
        if inside.size:
            pvc = int(rng.choice(inside))
            shift = 0.35 * mean_rr
            peaks[pvc] -= shift  # premature ...
            peaks[pvc + 1 :] += shift * 0.9  # ... with a (nearly) compensatory pause
    return peaks, pvc


def simulate_strip(cls: str, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """One strip: float32 samples in mV and the mean ventricular rate (bpm) within the strip."""
    rate = rng.uniform(*RATE_BPM[cls])
    peaks, pvc = _r_peaks(cls, rate, rng)
    n = int(DURATION_S * FS)
    t = np.arange(n) / FS
    amp = rng.normal(1, 0.1, 5) * rng.uniform(0.6, 1.5)  # lead gain and per-wave variation
    ecg = np.zeros(n)
    for i, tp in enumerate(peaks):
        lo, hi = int(max(0, (tp - 0.45) * FS)), int(min(n, (tp + 0.75) * FS))
        if hi <= lo:
            continue
        rr = peaks[i] - peaks[i - 1] if i else peaks[1] - peaks[0]
        ecg[lo:hi] += _beat(t[lo:hi] - tp, rr, amp, with_p=cls != "af" and i != pvc, pvc=i == pvc)
    if cls == "af":  # fibrillatory waves, frequency wandering around 4-9 Hz
        f = rng.uniform(4, 9) + 0.5 * np.sin(2 * np.pi * 0.1 * t + rng.uniform(0, 6.3))
        ecg += rng.uniform(0.02, 0.08) * np.sin(2 * np.pi * np.cumsum(f) / FS)
    # Noise: baseline wander, muscle (EMG-like) noise, mains hum.
    ecg += rng.uniform(0.02, 0.3) * np.sin(
        2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6.3)
    )
    ecg += rng.normal(0, rng.uniform(0.005, 0.04), n)
    ecg += rng.uniform(0, 0.04) * np.sin(2 * np.pi * 50 * t + rng.uniform(0, 6.3))
    inside = (peaks >= 0) & (peaks < DURATION_S)
    n_beats = max(int(inside.sum()) - 1, 1)
    first, last = peaks[inside][0], peaks[inside][-1]
    hr = 60.0 * n_beats / max(last - first, 1e-3)
    return ecg.astype(np.float32), round(float(hr), 2)


def _write(ctx: GenContext) -> None:
    n = ctx.n
    assign = ctx.rng("assign")
    labels = assign.choice(len(CLASSES), size=n, p=PREVALENCE)
    is_test = assign.random(n) < TEST_FRACTION
    # the test strips (rhythm and samples) come from the hidden streams
    hidden_labels = ctx.hidden_rng("assign").choice(len(CLASSES), size=n, p=PREVALENCE)
    labels = np.where(is_test, hidden_labels, labels)
    signals = np.empty((n, int(DURATION_S * FS)), dtype=np.float32)
    hr = np.empty(n, dtype=np.float32)
    for i in range(n):
        rng = ctx.stream(bool(is_test[i]), "strip", i)
        signals[i], hr[i] = simulate_strip(CLASSES[labels[i]], rng)
        if (i + 1) % 100 == 0:
            ctx.progress(100)
    ctx.progress(n % 100)
    tr, te = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    fs = np.float32(FS)
    names = np.array(CLASSES)
    save_npz(
        ctx.public_dir / "train.npz",
        {
            "signals": signals[tr],
            "labels": labels[tr],
            "hr_bpm": hr[tr],
            "fs": fs,
            "classes": names,
            "id": tr,
        },
    )
    save_npz(
        ctx.public_dir / "test.npz", {"signals": signals[te], "fs": fs, "classes": names, "id": te}
    )
    save_npz(ctx.hidden_dir / "test_labels.npz", {"labels": labels[te], "hr_bpm": hr[te], "id": te})


SPEC = DatasetSpec(
    name="ecg",
    summary="single-lead ECG strips (10 s, 250 Hz, mV) labelled normal / AF / brady / tachy",
    default_n=600,
    formats=("npz",),
    write=_write,
    unit="strips",
    max_n=200_000,
)
