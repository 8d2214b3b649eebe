"""The embedded default dataset: procedurally drawn, captioned shapes, made at start-up (no download).

Each image is one shape (circle, square, triangle, star, cross) of one colour, small or large, placed with
jitter and rotation on a plain background of another colour, 32×32 RGB, antialiased by 4× supersampling.
Its caption names every attribute: "a large red circle on a blue background". The same seed gives the
same images on every machine.

Held-out combinations: some (shape, colour) pairs never appear in training, so an evaluation can ask
whether the model composes attributes it has only seen apart. Also: ``check_images``, the start-up guard
against wrongly scaled data.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLORS = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 70, 220),
    "yellow": (240, 220, 40),
    "purple": (140, 50, 180),
    "orange": (245, 140, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOR_NAMES = tuple(COLORS)
SIZES = {"small": (0.22, 0.30), "large": (0.36, 0.46)}  # radius as a fraction of the image side
SIZE_NAMES = tuple(SIZES)
# (shape, foreground colour) pairs kept out of training: one per shape, each colour at most once.
SPLITS = ("train", "heldout", "all")  # all_combinations: without HELDOUT_PAIRS, only them, both
HELDOUT_PAIRS = (("circle", "green"), ("square", "purple"), ("triangle", "orange"), ("star", "blue"), ("cross", "red"))
ATTRIBUTES = {"shape": SHAPES, "color": COLOR_NAMES, "background": COLOR_NAMES, "size": SIZE_NAMES}
SUPERSAMPLE = 4


@dataclass
class ShapesDataset:
    """images: (N, 3, H, W) float32 in [-1, 1]; captions: N strings; labels: attribute → (N,) long."""

    images: torch.Tensor
    captions: list
    labels: dict

    def __len__(self) -> int:
        return len(self.captions)


def caption(shape: str, color: str, background: str, size: str) -> str:
    article = "an" if background[0] in "aeiou" else "a"  # "on an orange background"
    return f"a {size} {color} {shape} on {article} {background} background"


def _polygon_mask(px, py, vertices) -> np.ndarray:
    """Even-odd point-in-polygon test for points (px, py) of any shape; vertices: list of (x, y)."""
    inside = np.zeros(px.shape, dtype=bool)
    n = len(vertices)
    for i in range(n):
        x1, y1 = vertices[i]
        x2, y2 = vertices[(i + 1) % n]
        crosses = (y1 > py) != (y2 > py)
        x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1 + 1e-12)
        inside ^= crosses & (px < x_at)
    return inside


def _shape_mask(shape: str, px, py, r: float, angle: float) -> np.ndarray:
    """Boolean mask of a shape of radius r centred at the origin, rotated by ``angle`` radians."""
    if shape == "circle":
        return px**2 + py**2 <= r**2
    c, s = math.cos(angle), math.sin(angle)
    qx, qy = c * px + s * py, -s * px + c * py  # rotate the points, not the shape
    if shape == "square":
        h = r * 0.85
        return (np.abs(qx) <= h) & (np.abs(qy) <= h)
    if shape == "cross":
        arm = r * 0.33
        return ((np.abs(qx) <= arm) & (np.abs(qy) <= r)) | ((np.abs(qy) <= arm) & (np.abs(qx) <= r))
    if shape == "triangle":
        k = 3
        radii = [r] * k
    elif shape == "star":
        k = 10
        radii = [r if i % 2 == 0 else r * 0.45 for i in range(k)]
    else:
        raise ValueError(f"unknown shape {shape!r}; allowed: {', '.join(SHAPES)}")
    verts = [(radii[i] * math.sin(2 * math.pi * i / k), -radii[i] * math.cos(2 * math.pi * i / k)) for i in range(k)]
    return _polygon_mask(qx, qy, verts)


def render(shape: str, color: str, background: str, size: str, rng: np.random.Generator, image_size: int) -> np.ndarray:
    """One image, (H, W, 3) uint8. Radius, centre and rotation are drawn from ``rng``."""
    lo, hi = SIZES[size]
    r = rng.uniform(lo, hi) * image_size
    margin = min(r + 1, image_size / 2)  # keep the shape inside the image (tiny test images too)
    cx, cy = rng.uniform(margin, image_size - margin, size=2)
    angle = rng.uniform(-math.pi / 8, math.pi / 8)
    n = image_size * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / SUPERSAMPLE
    py, px = np.meshgrid(coords - cy, coords - cx, indexing="ij")
    mask = _shape_mask(shape, px, py, r, angle).astype(np.float32)
    coverage = mask.reshape(image_size, SUPERSAMPLE, image_size, SUPERSAMPLE).mean(axis=(1, 3))[..., None]
    fg, bg = np.array(COLORS[color], np.float32), np.array(COLORS[background], np.float32)
    return np.round(coverage * fg + (1 - coverage) * bg).astype(np.uint8)


def all_combinations(split: str) -> list:
    """Every (shape, colour, background, size) with colour ≠ background, of one split.

    split "train": pairs not in HELDOUT_PAIRS; "heldout": only those pairs; "all": both.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: train, heldout, all")
    combos = []
    for shape in SHAPES:
        for color in COLOR_NAMES:
            held = (shape, color) in HELDOUT_PAIRS
            if (split == "train" and held) or (split == "heldout" and not held):
                continue
            combos += [(shape, color, bg, size) for bg in COLOR_NAMES if bg != color for size in SIZE_NAMES]
    return combos


def make_shapes_dataset(*, size: int, seed: int, image_size: int, split: str = "train") -> ShapesDataset:
    """``size`` images drawn uniformly from the split's attribute combinations, deterministic in ``seed``."""
    if size < 1:
        raise ValueError(f"dataset size must be at least 1, got {size}")
    rng = np.random.default_rng(seed)
    combos = all_combinations(split)
    picks = rng.integers(len(combos), size=size)
    arrays, captions = [], []
    labels = {name: [] for name in ATTRIBUTES}
    for i in picks:
        shape, color, background, sz = combos[i]
        arrays.append(render(shape, color, background, sz, rng, image_size))
        captions.append(caption(shape, color, background, sz))
        for name, value in zip(ATTRIBUTES, (shape, color, background, sz)):
            labels[name].append(ATTRIBUTES[name].index(value))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1  # (N, 3, H, W)
    return ShapesDataset(images, captions, {k: torch.tensor(v) for k, v in labels.items()})


def check_images(images: torch.Tensor, *, image_size: int) -> None:
    """Stop early on data that would silently ruin training: wrong shape, wrong range, no contrast.

    A training journal this repo learned from lost a tuning stage to images scaled to [0, 1] instead of [-1, 1].
    """
    if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (image_size, image_size):
        raise ValueError(f"images must be (N, 3, {image_size}, {image_size}), got {tuple(images.shape)}")
    lo, hi, mean, std = images.min().item(), images.max().item(), images.mean().item(), images.std().item()
    stats = f"min={lo:.3f} max={hi:.3f} mean={mean:.3f} std={std:.3f}"
    if not math.isfinite(mean) or lo < -1.0001 or hi > 1.0001:
        raise ValueError(f"images must lie in [-1, 1] ({stats}); scale uint8 pixels as x / 127.5 - 1")
    if lo >= 0:
        raise ValueError(f"images look scaled to [0, 1], not [-1, 1] ({stats}); use x * 2 - 1")
    if std < 0.05:
        raise ValueError(f"images have almost no contrast ({stats}); the data is probably blank or mis-decoded")


def grid_prompts(n: int) -> list:
    """A fixed, varied list of ``n`` captions for the training-time sample grids (every shape, colours rotating)."""
    prompts = []
    for i in range(n):
        color = COLOR_NAMES[(3 * i) % len(COLOR_NAMES)]
        background = COLOR_NAMES[(3 * i + 1 + i // len(COLOR_NAMES)) % len(COLOR_NAMES)]
        prompts.append(caption(SHAPES[i % len(SHAPES)], color, background, SIZE_NAMES[(i // len(SHAPES)) % 2]))
    return prompts
