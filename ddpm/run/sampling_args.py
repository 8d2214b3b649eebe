"""The sampling parameters a command may be given, checked once for ``sample.py`` and ``make eval`` alike.

Each check returns a list of problems, each naming the value as the Makefile spells it (``N=``, ``GUIDANCE=``,
``STEPS=``, ``SEED=``) and what is allowed; the entry point joins them into its one-line error and exits with
code 2, before anything is sampled. Both commands call the same function, so they cannot disagree.
"""

import math
import os

from ddpm.files import unwritable_reason
from ddpm.model.diffusion import max_sampling_steps

PRECISIONS = ("auto", "fp32", "bf16")  # "auto": bf16 where the device computes it natively, else fp32 (ADR 0035)
SEED_MAX = 2**64 - 1  # torch.Generator.manual_seed takes at most this (and wraps negatives, so we refuse them)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # what torchvision's save_image writes through PIL, by suffix


def sampling_problems(*, n: int, n_max: int, guidance: float, steps: int, timesteps: int, seed: int,
                      eta: float = None, sweep=(), sampler: str = "ddim") -> list:
    """What is wrong with these parameters (empty when nothing): ``n`` images (or samples per prompt) in
    [1, n_max], guidance finite and ≥ 0, steps in [1, the checkpoint's TIMESTEPS] (less one for dpmpp2m), seed in
    [0, SEED_MAX], η in [0, 1] (when given), and every guidance scale of a sweep finite and ≥ 0."""
    guidance_rule = "must be a finite number ≥ 0 (1 = no guidance)"
    most = max_sampling_steps(sampler, timesteps)
    problems = [message for bad, message in (
        (not 1 <= n <= n_max, f"N={n}: must be in [1, {n_max}]"),
        (not (math.isfinite(guidance) and guidance >= 0), f"GUIDANCE={guidance:g}: {guidance_rule}"),
        (not 1 <= steps <= most, f"STEPS={steps}: must be in [1, {most}] (the checkpoint's TIMESTEPS"
                                 + (" less one for dpmpp2m)" if most < timesteps else ")")),
        (eta is not None and not 0 <= eta <= 1, f"eta={eta}: must be in [0, 1]"),
        (not 0 <= seed <= SEED_MAX, f"SEED={seed}: must be in [0, {SEED_MAX}] (2**64 - 1, what torch's generator takes)"),
    ) if bad]
    bad_scales = [s for s in sweep if not (math.isfinite(s) and s >= 0)]
    if bad_scales:
        problems.append(f"SWEEP value{'s' if len(bad_scales) > 1 else ''} {', '.join(f'{s:g}' for s in bad_scales)}: "
                        f"each guidance scale {guidance_rule}")
    return problems


def image_path_problems(path: str) -> list:
    """What stops an image from being written to ``path``: a suffix save_image cannot write, an existing
    folder at that name, or a parent where files cannot be created."""
    suffix = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        return [f"OUT={path} is a folder: give a file name ending in .png or .jpg"]
    if suffix not in IMAGE_SUFFIXES:
        return [f"OUT={path}: the name must end in {', '.join(IMAGE_SUFFIXES)} (the image format comes from it)"]
    reason = unwritable_reason(os.path.dirname(os.path.abspath(path)))
    return [f"OUT={path}: {reason}; choose another place"] if reason else []
