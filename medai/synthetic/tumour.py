"""Tumour screening images: grey 64x64 tissue patches with 0-3 faint lesions and their masks.

The background is mammography-like tissue: noise smoothed at two scales (parenchymal texture), a
broad brightness gradient (uneven exposure / breast density) and bright curvilinear structures
(ducts, vessels). Lesions are roughly round masses, slightly brighter and smoother than the tissue
around them, with contrast drawn per lesion so some are barely visible. Because the gradient is
as large as or larger than a lesion's contrast, a single global threshold cannot separate lesions
from tissue; a model that looks at local context can.

Hand-written on purpose: no maintained library synthesises lesion phantoms with masks this small.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medai.synthetic._io import save_npz, write_jsonl
from medai.synthetic.core import DatasetSpec, GenContext

IMAGE_SIZE = 64
DEV_FRACTION = 0.2  # of the non-test images
TEST_FRACTION = 0.25
LESION_COUNT_P = np.array([0.25, 0.40, 0.25, 0.10])  # P(0), P(1), P(2), P(3) lesions
RADIUS_PX = (3.5, 8.0)  # lesion radius range, pixels
CONTRAST = (2.2, 4.0)  # lesion brightness above tissue, in units of the texture sd
NOISE_SD = 0.35  # white noise sd, same units


def _field(rng: np.random.Generator, sigma: float, n: int) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma, mode="reflect")
    return f / (f.std() + 1e-9)


def render_image(
    rng: np.random.Generator, n_lesions: int, size: int = IMAGE_SIZE
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """One image (uint8), its instance mask (uint8, 0 = tissue, k = lesion k) and lesion list."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    tissue = 0.8 * _field(rng, 1.2, size) + 0.6 * _field(rng, 3.5, size)
    tissue /= tissue.std()
    # Broad gradient: a random plane plus a very smooth blob, several texture sds peak to peak.
    g = rng.normal(0, 1, 2)
    grad = (g[0] * (yy / size - 0.5) + g[1] * (xx / size - 0.5)) * 2.0
    grad += 1.0 * _field(rng, 14.0, size)
    img = tissue + grad
    # Bright curvilinear structures (ducts / vessels) as distractors.
    for _ in range(rng.integers(0, 4)):
        p = rng.uniform(0, size, 2)
        ang = rng.uniform(0, 2 * np.pi)
        line = np.zeros((size, size))
        for _step in range(60):
            ang += rng.normal(0, 0.15)
            p = p + np.array([np.sin(ang), np.cos(ang)])
            iy, ix = int(p[0]), int(p[1])
            if 0 <= iy < size and 0 <= ix < size:
                line[iy, ix] = 1.0
        img += rng.uniform(1.0, 2.2) * ndimage.gaussian_filter(line, 0.7) * 2.5

    mask = np.zeros((size, size), dtype=np.uint8)
    lesions: list[dict] = []
    for k in range(1, n_lesions + 1):
        for _try in range(50):  # place without touching earlier lesions
            r = rng.uniform(*RADIUS_PX)
            cy, cx = rng.uniform(r + 1, size - r - 1, 2)
            if all(np.hypot(cy - d["cy"], cx - d["cx"]) > r + d["radius"] + 3 for d in lesions):
                break
        else:
            break
        aspect = rng.uniform(0.75, 1.0)
        rot = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(rot) + (yy - cy) * np.sin(rot)
        v = (-(xx - cx) * np.sin(rot) + (yy - cy) * np.cos(rot)) / aspect
        theta = np.arctan2(v, u)
        edge_r = r * (1 + 0.08 * np.cos(3 * theta + rng.uniform(0, 6.3)))
        rho = np.hypot(u, v)
        inside = rho <= edge_r
        profile = 1 / (1 + np.exp((rho - edge_r) / 0.5))  # soft edge
        contrast = rng.uniform(*CONTRAST)
        # Masses look smoother than tissue: damp the fine texture inside, then add brightness.
        img = img - 0.85 * profile * tissue
        img += contrast * profile
        mask[inside & (mask == 0)] = k
        lesions.append(
            {
                "id": k,
                "cy": round(float(cy), 2),
                "cx": round(float(cx), 2),
                "radius": round(float(r), 2),
                "area_px": int(inside.sum()),
                "contrast": round(float(contrast), 3),
            }
        )
    img += rng.normal(0, NOISE_SD, img.shape)
    # Map to uint8 with a fixed window (no per-image normalisation, which would leak lesion count).
    out = np.clip(np.rint(128 + 18 * img), 0, 255).astype(np.uint8)
    return out, mask, lesions


def _write(ctx: GenContext) -> None:
    n = ctx.n
    assign = ctx.rng("assign")
    counts = assign.choice(len(LESION_COUNT_P), size=n, p=LESION_COUNT_P)
    is_test = assign.random(n) < TEST_FRACTION
    # the test images (lesion count, pixels and masks) come from the hidden streams
    hidden_counts = ctx.hidden_rng("assign").choice(len(LESION_COUNT_P), size=n, p=LESION_COUNT_P)
    counts = np.where(is_test, hidden_counts, counts)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    masks = np.empty_like(images)
    lesion_lists: list[list[dict]] = []
    for i in range(n):
        rng = ctx.stream(bool(is_test[i]), "image", i)
        images[i], masks[i], les = render_image(rng, int(counts[i]))
        lesion_lists.append(les)
        if (i + 1) % 100 == 0:
            ctx.progress(100)
    ctx.progress(n % 100)
    # a labelled development split carved from the non-test images (drawn after everything
    # else, so the existing images and test split stay the same)
    is_dev = ~is_test & (assign.random(n) < DEV_FRACTION)
    tr = np.flatnonzero(~is_test & ~is_dev)
    dv, te = np.flatnonzero(is_dev), np.flatnonzero(is_test)
    save_npz(ctx.public_dir / "train.npz", {"images": images[tr], "masks": masks[tr], "id": tr})
    save_npz(ctx.public_dir / "dev.npz", {"images": images[dv], "masks": masks[dv], "id": dv})
    write_jsonl(
        ctx.public_dir / "dev_lesions.jsonl",
        ({"id": int(i), "lesions": lesion_lists[i]} for i in dv),
    )
    save_npz(ctx.public_dir / "test.npz", {"images": images[te], "id": te})
    save_npz(ctx.hidden_dir / "test_masks.npz", {"masks": masks[te], "id": te})
    write_jsonl(
        ctx.public_dir / "train_lesions.jsonl",
        ({"id": int(i), "lesions": lesion_lists[i]} for i in tr),
    )
    write_jsonl(
        ctx.hidden_dir / "test_lesions.jsonl",
        ({"id": int(i), "lesions": lesion_lists[i]} for i in te),
    )


SPEC = DatasetSpec(
    name="tumour",
    summary="64x64 grey tissue images with 0-3 faint lesions, instance masks and lesion lists",
    default_n=2000,
    formats=("npz",),
    write=_write,
    unit="images",
    max_n=200_000,
)
