"""The shapes evaluation's prompts and their real references: a fixed draw of seen and held-out (shape, colour,
background, size) combinations (the held-out ones pair a shape with a colour training never showed together,
ADR 0016), the parser of a shapes caption back into its attributes, label tensors in generation order, and real
renders of the same prompts (the probe's ceiling and the Fréchet reference). The same on every machine.
"""

import re
from typing import Sequence

import numpy as np
import torch

from ddpm.data.shapes import ATTRIBUTES, all_combinations, render

NUM_SEEN = 80  # prompts drawn from all_combinations("train"); × 8 samples: 640, an interval of ±0.02 at 0.93 (ADR 0053)
NUM_HELDOUT = 40  # prompts drawn from all_combinations("heldout"): 320 samples, ±0.03
QUICK_DRAW = (24, 12)  # the draw whose first 4 + 4 prompts the in-training probe reads since ADR 0008 (make eval's
# prompts before ADR 0053): kept, so that steps to 0.9 compare across every ADR's runs
PROMPT_SEED = 20_240_601  # fixes which prompts; not the sampling seed
REAL_SEED = 777_001  # seed of the real reference renders (ceiling, FD reference)
REAL_PER_PROMPT = 32  # real renders per prompt for the ceiling (at least 2·n are rendered)
_CAPTION_RE = re.compile(r"^a (\w+) (\w+) (\w+) on an? (\w+) background$")


def eval_prompts(num_seen: int = NUM_SEEN, num_heldout: int = NUM_HELDOUT, seed: int = PROMPT_SEED) -> tuple:
    """(seen, heldout): lists of (shape, colour, background, size), the same on every machine."""
    rng = np.random.default_rng(seed)
    out = []
    for split, k in (("train", num_seen), ("heldout", num_heldout)):
        combos = all_combinations(split)
        picks = rng.choice(len(combos), size=min(k, len(combos)), replace=False)
        out.append([combos[i] for i in sorted(picks)])
    return tuple(out)


def parse_caption(text: str) -> tuple:
    """The inverse of ``data.caption``: "a large red circle on a blue background" → ("circle", "red", "blue", "large")."""
    m = _CAPTION_RE.match(text.strip())
    if not m:
        raise ValueError(
            f"not a shapes caption: {text!r}; expected 'a <size> <colour> <shape> on a <colour> background'"
        )
    size, color, shape, background = m.groups()
    combo = (shape, color, background, size)
    for name, value in zip(ATTRIBUTES, combo):
        if value not in ATTRIBUTES[name]:
            raise ValueError(f"caption {text!r}: unknown {name} {value!r}; allowed: {', '.join(ATTRIBUTES[name])}")
    return combo


def _as_combo(p) -> tuple:
    return parse_caption(p) if isinstance(p, str) else tuple(p)


def labels_for(combos: Sequence[tuple], n: int) -> dict:
    """attribute → (len(combos)·n,) long, each combo repeated n times in a row (the generation order)."""
    return {
        name: torch.tensor([ATTRIBUTES[name].index(c[i]) for c in combos for _ in range(n)])
        for i, name in enumerate(ATTRIBUTES)
    }


def render_real(combos: Sequence[tuple], n: int, *, seed: int, image_size: int) -> torch.Tensor:
    """(len(combos)·n, 3, H, W) real images in [-1, 1], n per combo in a row, deterministic in seed."""
    rng = np.random.default_rng(seed)
    arrays = [render(*c, rng, image_size) for c in combos for _ in range(n)]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1


# ---- metrics ------------------------------------------------------------------------------------------
