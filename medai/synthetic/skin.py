"""Skin-lesion images: small dermoscopy-like RGB pictures in five imbalanced classes.

Each image is drawn at 32x32 (soft edges and a final optical blur stand in for anti-aliasing;
``_RENDER`` can draw larger and average down). A lesion is a blob whose
outline is a circle perturbed by random harmonics; each class has its own size, border
irregularity, edge sharpness, colour palette, colour variegation and texture, loosely after the
dermoscopy features taught as the ABCD rule (asymmetry, border, colour, differential structures;
Nachbar et al., J Am Acad Dermatol 1994;30:551-559). Every image also carries the look of the
clinic (camera site) that took it: white balance, blur, vignetting and sensor noise.

Hand-written on purpose: no maintained library renders synthetic dermoscopy images.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medai.synthetic._io import save_npz, write_json
from medai.synthetic.core import DatasetSpec, GenContext

CLASSES: tuple[str, ...] = ("nevus", "melanoma", "keratosis", "bcc", "vascular")
CLASS_NAMES: dict[str, str] = {
    "nevus": "melanocytic nevus (benign mole)",
    "melanoma": "melanoma",
    "keratosis": "seborrhoeic keratosis (benign)",
    "bcc": "basal cell carcinoma",
    "vascular": "vascular lesion (angioma)",
}
# Overall prevalence; each site tilts it (see SITES below).
PREVALENCE = np.array([0.55, 0.15, 0.14, 0.10, 0.06])
IMAGE_SIZE = 32
_RENDER = 32  # drawn at this size (a multiple of IMAGE_SIZE), then averaged down to it
_PX = _RENDER / 64  # pixel-size scale of the texture parameters below (tuned at 64)
DEV_FRACTION = 0.2  # of the non-test images
TEST_FRACTION = 0.25

# Per-class look. radius: fraction of the half-width; irregular: amplitude of border harmonics;
# edge: width of the soft border; variegation: strength of the colour mixing field.
_LOOK = {
    "nevus": dict(radius=(0.30, 0.50), irregular=0.03, edge=0.05, variegation=0.10, asym=0.02),
    "melanoma": dict(radius=(0.34, 0.62), irregular=0.16, edge=0.03, variegation=0.75, asym=0.12),
    "keratosis": dict(radius=(0.34, 0.55), irregular=0.07, edge=0.012, variegation=0.25, asym=0.04),
    "bcc": dict(radius=(0.30, 0.50), irregular=0.06, edge=0.04, variegation=0.15, asym=0.05),
    "vascular": dict(radius=(0.24, 0.42), irregular=0.03, edge=0.02, variegation=0.20, asym=0.02),
}

# Camera sites: per-channel white-balance gains, blur sigma (pixels at 64x64), vignetting depth,
# noise sd (0-255 scale) and a multiplicative tilt of the class prevalence. Blur is given in
# pixels of a 64x64 rendering and scaled to the output size.
SITES = (
    dict(gain=(1.00, 1.00, 1.00), blur=0.6, vignette=0.10, noise=3.0, tilt=(1, 1, 1, 1, 1)),
    dict(gain=(1.10, 0.98, 0.88), blur=1.2, vignette=0.30, noise=5.0, tilt=(1, 1.6, 0.8, 1, 1)),
    dict(gain=(0.90, 0.98, 1.12), blur=0.9, vignette=0.20, noise=4.0, tilt=(1.2, 0.7, 1, 1.3, 1)),
    dict(gain=(1.04, 1.05, 0.96), blur=1.6, vignette=0.45, noise=6.0, tilt=(1, 1, 1.4, 0.8, 1.2)),
)
SITE_SHARE = np.array([0.35, 0.25, 0.25, 0.15])


def _smooth_field(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Unit-variance smooth noise at render size (filtered at half size, then doubled: cheaper)."""
    h = _RENDER // 2
    f = ndimage.gaussian_filter(rng.standard_normal((h, h)), sigma / 2, mode="wrap")
    f = f.repeat(2, axis=0).repeat(2, axis=1)  # smooth enough that doubling shows no blocks
    return f / (f.std() + 1e-9)


def _skin_tone(rng: np.random.Generator) -> np.ndarray:
    light = np.array([236.0, 198.0, 176.0])
    dark = np.array([128.0, 86.0, 62.0])
    t = rng.beta(2.0, 3.0)
    return light * (1 - t) + dark * t


def _lesion_palette(cls: str, rng: np.random.Generator, skin: np.ndarray) -> list[np.ndarray]:
    """Two or three colours the lesion interior mixes between."""
    j = lambda: rng.normal(0, 10, 3)  # noqa: E731 - small colour jitter
    if cls == "nevus":
        base = np.array([150.0, 100.0, 70.0]) * rng.uniform(0.6, 1.1)
        return [base + j(), base * 0.9 + j()]
    if cls == "melanoma":
        cols = [
            np.array([95.0, 60.0, 45.0]) * rng.uniform(0.8, 1.3),  # brown
            np.array([40.0, 30.0, 32.0]),  # black
            np.array([105.0, 115.0, 140.0]),  # blue-grey veil
            np.array([170.0, 95.0, 90.0]),  # regression / red
        ]
        idx = rng.choice(4, size=3, replace=False)
        return [cols[i] + j() for i in idx]
    if cls == "keratosis":
        base = np.array([175.0, 128.0, 88.0]) * rng.uniform(0.55, 1.1)
        return [base + j(), base * 0.75 + j()]
    if cls == "bcc":
        pink = 0.55 * skin + 0.45 * np.array([235.0, 170.0, 175.0])
        return [pink + j(), pink * 0.92 + j()]
    # vascular
    base = np.array([165.0, 45.0, 75.0]) * rng.uniform(0.75, 1.15)
    return [base + j(), np.array([110.0, 30.0, 70.0]) + j()]


def render_image(
    cls: str, site: int, rng: np.random.Generator, size: int = IMAGE_SIZE
) -> np.ndarray:
    """One lesion image, uint8 (size, size, 3). ``rng`` supplies all randomness."""
    if _RENDER % size:
        raise ValueError(f"size must divide the render size {_RENDER}; got {size}")
    look = dict(_LOOK[cls])
    if cls == "nevus" and rng.random() < 0.2:  # atypical (dysplastic) nevus: closer to melanoma
        look.update(irregular=0.09, variegation=0.35, asym=0.06)
    if cls == "melanoma":  # some melanomas are small, symmetric and nearly one colour
        look["variegation"] *= rng.uniform(0.3, 1.2)
        look["irregular"] *= rng.uniform(0.4, 1.2)
    n = _RENDER
    yy, xx = (np.mgrid[0:n, 0:n] + 0.5) / (n / 2) - 1.0  # coordinates in [-1, 1]
    skin = _skin_tone(rng)
    # Skin: tone plus a faint blotchy field.
    img = skin[None, None, :] * (1 + 0.04 * _smooth_field(rng, 6.0 * _PX))[..., None]

    # Outline: polar radius with random harmonics (border irregularity) and an offset (asymmetry).
    cy, cx = rng.normal(0, 0.08, 2)
    r0 = rng.uniform(*look["radius"])
    aspect = rng.uniform(0.8, 1.0)
    rot = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(rot) + (yy - cy) * np.sin(rot)
    v = (-(xx - cx) * np.sin(rot) + (yy - cy) * np.cos(rot)) / aspect
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    radius = np.full_like(rho, r0)
    for k in range(1, 9):
        amp = look["asym"] if k == 1 else look["irregular"] * rng.uniform(0.4, 1.2) / np.sqrt(k - 1)
        radius += r0 * amp * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    edge = look["edge"] * rng.uniform(0.7, 1.4)
    mask = 1.0 / (1.0 + np.exp(-(radius - rho) / edge))

    # Interior colour: mix palette colours by smooth random fields (colour variegation).
    palette = _lesion_palette(cls, rng, skin)
    lesion = np.broadcast_to(palette[0], (n, n, 3)).copy()
    for col in palette[1:]:
        w = 1 / (1 + np.exp(-2.5 * _smooth_field(rng, 4.0 * _PX) + 1.0))
        w = w * look["variegation"] / 0.75
        lesion = lesion * (1 - w[..., None]) + col[None, None, :] * w[..., None]
    if cls == "nevus":  # darker centre, fading rim: regular pigment network
        lesion *= (0.85 + 0.15 * np.clip(rho / max(r0, 1e-3), 0, 1))[..., None]
    if cls == "keratosis":  # coarse cerebriform texture with bright milia-like dots
        grain = ndimage.gaussian_filter(rng.standard_normal((n, n)), 0.9 * _PX)
        lesion *= (1 + 0.9 * grain / grain.std() * 0.25)[..., None]
        dots = rng.random((n, n)) < 0.06 * _PX**2  # milia-like dots, about 2.5 px wide at 64
        lesion[dots] = skin * 1.05
    if cls == "bcc":  # arborising vessels: thin red branching lines
        for _ in range(rng.integers(2, 5)):
            p = np.array([cx, cy]) + rng.normal(0, r0 * 0.3, 2)
            ang = rng.uniform(0, 2 * np.pi)
            for _step in range(28):
                ang += rng.normal(0, 0.35)
                p = p + 0.03 * np.array([np.cos(ang), np.sin(ang)])
                iy, ix = int((p[1] + 1) * n / 2), int((p[0] + 1) * n / 2)
                if 0 <= iy < n and 0 <= ix < n:
                    lesion[iy, ix] = (180.0, 35.0, 45.0)
        # a few blue-grey globules
        for _ in range(rng.integers(0, 3)):
            gy, gx = rng.normal(0, r0 * 0.4, 2) + (cy, cx)
            blob = np.hypot(yy - gy, xx - gx) < 0.05
            lesion[blob] = (85.0, 95.0, 115.0)
    if cls == "vascular":  # red lobules (lacunae) separated by paler septa
        lac = np.zeros((n, n))
        for _ in range(rng.integers(4, 9)):
            gy, gx = rng.normal(0, r0 * 0.45, 2) + (cy, cx)
            lac = np.maximum(lac, np.hypot(yy - gy, xx - gx) < rng.uniform(0.06, 0.13))
        lesion = lesion * (0.75 + 0.35 * lac[..., None])
    img = img * (1 - mask[..., None]) + lesion * mask[..., None]
    if rng.random() < 0.3:  # a hair or two
        for _ in range(rng.integers(1, 3)):
            a, b = rng.uniform(-1, 1, 2), rng.uniform(-1, 1, 2)
            t = np.linspace(0, 1, 120)[:, None]
            pts = ((a + (b - a) * t) + 1) * n / 2
            pts = np.clip(pts.astype(int), 0, n - 1)
            hair = (pts[:, 1], pts[:, 0])
            img[hair] = 0.45 * img[hair] + 0.55 * np.array(
                [55.0, 40.0, 35.0]
            )  # thinner than a pixel

    # Camera site: white balance, blur, vignetting, sensor noise.
    s = SITES[site]
    img = img * np.asarray(s["gain"]) * rng.uniform(0.93, 1.07)
    img *= (1 - s["vignette"] * np.clip(np.hypot(xx, yy) / np.sqrt(2), 0, 1) ** 2)[..., None]
    f = n // size
    img = img.reshape(size, f, size, f, 3).mean(axis=(1, 3))
    blur = s["blur"] / f  # the optics blur, applied at output size (same look, less work)
    img = ndimage.gaussian_filter(img, (blur, blur, 0))
    img += rng.normal(0, s["noise"], img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _sites_and_labels(assign: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    sites = assign.choice(len(SITES), size=n, p=SITE_SHARE)
    labels = np.empty(n, dtype=np.int64)
    for s in range(len(SITES)):
        p = PREVALENCE * np.asarray(SITES[s]["tilt"])
        idx = np.flatnonzero(sites == s)
        labels[idx] = assign.choice(len(CLASSES), size=idx.size, p=p / p.sum())
    return sites, labels


def _write(ctx: GenContext) -> None:
    n = ctx.n
    assign = ctx.rng("assign")
    sites, labels = _sites_and_labels(assign, n)
    is_test = assign.random(n) < TEST_FRACTION
    # a labelled development split carved from the non-test images (drawn after is_test, so the
    # test images stay the same): the labs' public checks score trainees on it
    is_dev = ~is_test & (assign.random(n) < DEV_FRACTION)
    # the test images (class, site and pixels) come from the hidden streams
    hidden_sites, hidden_labels = _sites_and_labels(ctx.hidden_rng("assign"), n)
    sites = np.where(is_test, hidden_sites, sites)
    labels = np.where(is_test, hidden_labels, labels)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i in range(n):
        rng = ctx.stream(bool(is_test[i]), "image", i)
        images[i] = render_image(CLASSES[labels[i]], int(sites[i]), rng)
        if (i + 1) % 100 == 0:
            ctx.progress(100)
    ctx.progress(n % 100)
    tr = np.flatnonzero(~is_test & ~is_dev)
    dv, te = np.flatnonzero(is_dev), np.flatnonzero(is_test)
    save_npz(
        ctx.public_dir / "train.npz",
        {"images": images[tr], "labels": labels[tr], "site": sites[tr], "id": tr},
    )
    save_npz(
        ctx.public_dir / "dev.npz",
        {"images": images[dv], "labels": labels[dv], "site": sites[dv], "id": dv},
    )
    save_npz(ctx.public_dir / "test.npz", {"images": images[te], "id": te})
    save_npz(
        ctx.hidden_dir / "test_labels.npz", {"labels": labels[te], "site": sites[te], "id": te}
    )
    write_json(
        ctx.public_dir / "classes.json",
        {"classes": list(CLASSES), "descriptions": CLASS_NAMES, "image_size": IMAGE_SIZE},
    )


SPEC = DatasetSpec(
    name="skin",
    summary="32x32 RGB skin-lesion images, 5 imbalanced classes, 4 camera sites",
    default_n=3000,
    formats=("npz",),
    write=_write,
    unit="images",
    max_n=200_000,
)
