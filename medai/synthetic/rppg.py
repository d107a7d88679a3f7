"""Remote photoplethysmography (rPPG): face-camera colour traces with a known heart rate.

Each clip is the mean red, green and blue value of a facial skin region, frame by frame, as a
webcam at 30 frames per second would record it. The model follows the skin-reflection model of
Wang et al. (IEEE Trans Biomed Eng 2017;64:1479-1491, the POS paper):

    C(t) = I(t) * (skin_colour + pulse_direction * p(t)) + specular(t) * white + noise

* ``p(t)`` is a pulse wave (fundamental plus a weaker second harmonic, dicrotic shape) whose
  frequency wanders slowly around the clip's heart rate;
* ``pulse_direction`` is the blood-volume-pulse colour signature (strongest in green, after
  de Haan & van Leest, Physiol Meas 2014;35:1913), jittered per person;
* the skin's lightness sets its tone group (``skin_tone``: Fitzpatrick-like bands I-II, III-IV,
  V-VI) and the pulsatile amplitude: melanin absorbs light on its way to and from the blood, so
  the darkest skin carries 60 % of the pulse signal of the lightest, while camera noise and
  motion stay the same size (the mechanism behind the larger rPPG errors reported on dark skin);
* ``I(t)`` carries slow lighting drift and motion: sudden head turns (bumps lasting 0.3-2 s) and,
  in 40 % of clips, rhythmic movement (talking, nodding) at 0.8-2.2 Hz, i.e. inside the pulse band;
* ``specular(t)`` adds white glare that follows the motion;
* camera noise is white and small relative to the skin colour.

The label is the clip's mean heart rate in beats per minute; the skin-tone group is public (it
is visible in any video), so that errors can be reported per group.
Hand-written on purpose: no maintained library simulates rPPG colour traces.
"""

from __future__ import annotations

import numpy as np

from medai.synthetic._io import save_npz, write_csv
from medai.synthetic.core import DatasetSpec, GenContext

FPS = 30.0
DURATION_S = (20.0, 30.0)
HR_BPM = (48.0, 130.0)  # uniform range of the clip's mean heart rate
TEST_FRACTION = 0.3
PULSE_DIRECTION = np.array([0.33, 0.77, 0.53])  # relative pulsatile strength in R, G, B
LIGHTNESS = (0.55, 1.15)  # skin colour scale, darker to lighter
SKIN_TONES = ("V-VI", "III-IV", "I-II")  # thirds of the lightness range, darkest first
DARKEST_PULSE = 0.6  # pulsatile amplitude of the darkest skin relative to the lightest
RHYTHMIC_SHARE = 0.4  # clips with rhythmic movement inside the pulse band


def skin_tone(lightness: float) -> str:
    """The tone group of a skin lightness factor (equal thirds of :data:`LIGHTNESS`)."""
    lo, hi = LIGHTNESS
    k = int(np.clip((lightness - lo) / (hi - lo) * len(SKIN_TONES), 0, len(SKIN_TONES) - 1))
    return SKIN_TONES[k]


def simulate_clip(
    rng: np.random.Generator, hr_bpm: float, n_frames: int, fps: float = FPS
) -> tuple[np.ndarray, float, str]:
    """One clip: float32 (n_frames, 3) RGB means (0-255 scale), its mean heart rate (bpm) and
    its skin-tone group."""
    t = np.arange(n_frames) / fps
    # Instantaneous heart rate: the mean plus slow wander (+-4 bpm) and respiratory modulation.
    wander = np.cumsum(rng.normal(0, 1, n_frames))
    wander = (wander - np.linspace(wander[0], wander[-1], n_frames)) / np.sqrt(n_frames)
    resp = np.sin(2 * np.pi * rng.uniform(0.15, 0.35) * t + rng.uniform(0, 6.3))
    inst = hr_bpm + 4 * wander / (np.abs(wander).max() + 1e-9) * rng.uniform(0, 1) + resp
    inst += hr_bpm - inst.mean()  # the label is exactly the clip mean
    phase = 2 * np.pi * np.cumsum(inst / 60.0) / fps + rng.uniform(0, 6.3)
    pulse = np.sin(phase) + 0.35 * np.sin(2 * phase + 0.9) + 0.1 * np.sin(3 * phase + 1.4)
    pulse /= pulse.std()

    lightness = rng.uniform(*LIGHTNESS)
    skin = np.array([170.0, 120.0, 100.0]) * lightness  # darker to lighter skin
    skin *= rng.normal(1, 0.04, 3)  # camera white balance
    direction = PULSE_DIRECTION * rng.normal(1, 0.08, 3)
    amp = rng.uniform(0.0012, 0.004)  # pulsatile amplitude, fraction of the skin colour
    # melanin absorbs part of the light that reaches the blood: less pulse in darker skin
    frac = (lightness - LIGHTNESS[0]) / (LIGHTNESS[1] - LIGHTNESS[0])
    amp *= DARKEST_PULSE + (1 - DARKEST_PULSE) * frac

    # Illumination: slow drift plus motion-induced changes (all multiplicative).
    drift = (
        0.03
        * rng.uniform(0.2, 1.0)
        * np.sin(2 * np.pi * rng.uniform(0.005, 0.04) * t + rng.uniform(0, 6.3))
    )
    drift += rng.normal(0, 0.01) * (t / t[-1])
    motion = np.zeros(n_frames)
    for _ in range(rng.poisson(3)):  # head turns / shifts of the region of interest
        t0, dur = rng.uniform(0, t[-1]), rng.uniform(0.3, 2.0)
        motion += rng.normal(0, 0.015) * np.exp(-0.5 * ((t - t0) / (dur / 2.5)) ** 2)
    if rng.random() < RHYTHMIC_SHARE:  # rhythmic movement inside the pulse band
        f_mov = rng.uniform(0.8, 2.2)
        motion += rng.uniform(0.0015, 0.005) * np.sin(2 * np.pi * f_mov * t + rng.uniform(0, 6.3))
    intensity = 1 + drift + motion
    specular = np.abs(motion) * rng.uniform(0, 60)  # glare follows motion, white light

    rgb = intensity[:, None] * skin[None, :] * (1 + amp * direction[None, :] * pulse[:, None])
    rgb += specular[:, None]
    rgb += rng.normal(0, rng.uniform(0.05, 0.25), rgb.shape)  # camera / ROI-averaging noise
    return rgb.astype(np.float32), float(np.round(inst.mean(), 3)), skin_tone(lightness)


def _write(ctx: GenContext) -> None:
    n = ctx.n
    assign = ctx.rng("assign")
    hr = assign.uniform(*HR_BPM, n)
    n_frames = np.rint(assign.uniform(*DURATION_S, n) * FPS).astype(np.int32)
    is_test = assign.random(n) < TEST_FRACTION
    # the test clips (heart rate, length and trace) come from the hidden streams
    hidden = ctx.hidden_rng("assign")
    t_public = int(n_frames.max())  # train.npz's padded length never depends on the test clips
    hr = np.where(is_test, hidden.uniform(*HR_BPM, n), hr)
    n_frames = np.where(
        is_test, np.rint(hidden.uniform(*DURATION_S, n) * FPS).astype(np.int32), n_frames
    )
    clips: list[np.ndarray] = []
    hr_true = np.empty(n)
    tones = np.empty(n, dtype="<U6")
    for i in range(n):
        rng = ctx.stream(bool(is_test[i]), "clip", i)
        rgb, hr_true[i], tones[i] = simulate_clip(rng, float(hr[i]), int(n_frames[i]))
        clips.append(rgb)
        if (i + 1) % 50 == 0:
            ctx.progress(50)
    ctx.progress(n % 50)
    tr, te = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    hr32 = hr_true.astype(np.float32)
    if ctx.fmt == "npz":

        def stack(idx: np.ndarray) -> np.ndarray:
            t_max = max(t_public, int(n_frames[idx].max(initial=0)))
            out = np.full((idx.size, t_max, 3), np.nan, dtype=np.float32)
            for j, i in enumerate(idx):
                out[j, : n_frames[i]] = clips[i]
            return out

        fps = np.float32(FPS)
        save_npz(
            ctx.public_dir / "train.npz",
            {
                "rgb": stack(tr),
                "n_frames": n_frames[tr],
                "fps": fps,
                "hr_bpm": hr32[tr],
                "id": tr,
                "skin_tone": tones[tr],
            },
        )
        save_npz(
            ctx.public_dir / "test.npz",
            {
                "rgb": stack(te),
                "n_frames": n_frames[te],
                "fps": fps,
                "id": te,
                "skin_tone": tones[te],
            },
        )
        save_npz(ctx.hidden_dir / "test_labels.npz", {"hr_bpm": hr32[te], "id": te})
    else:  # csv: one row per frame, long format

        def rows(idx: np.ndarray):
            for i in idx:
                for k, (r, g, b) in enumerate(clips[i]):
                    yield (int(i), k, f"{k / FPS:.4f}", f"{r:.4f}", f"{g:.4f}", f"{b:.4f}")

        header = ("clip_id", "frame", "t_s", "r", "g", "b")
        write_csv(ctx.public_dir / "train_frames.csv", header, rows(tr))
        write_csv(ctx.public_dir / "test_frames.csv", header, rows(te))
        write_csv(
            ctx.public_dir / "train_labels.csv",
            ("clip_id", "hr_bpm"),
            ((int(i), f"{hr_true[i]:.3f}") for i in tr),
        )
        write_csv(
            ctx.public_dir / "clips.csv",
            ("clip_id", "split", "skin_tone"),
            ((int(i), "test" if is_test[i] else "train", tones[i]) for i in range(n)),
        )
        write_csv(
            ctx.hidden_dir / "test_labels.csv",
            ("clip_id", "hr_bpm"),
            ((int(i), f"{hr_true[i]:.3f}") for i in te),
        )


SPEC = DatasetSpec(
    name="rppg",
    summary="face-camera RGB mean traces (30 fps, 20-30 s) with motion and lighting artefacts; heart rate labels",
    default_n=200,
    formats=("npz", "csv"),
    write=_write,
    unit="clips",
    max_n=50_000,
)
