"""How to sample: one type, ``Sampling``, from config.py to the checkpoint, the grids, sample.py, make eval and the export.

``Sampling(guidance_scale, num_steps, sampler, eta, clip_x0)``: classifier-free guidance scale, sampler steps,
"ddim" / "ddpm" / "dpmpp2m" / "dpmpp2m_sde", the stochastic samplers' η, and whether the predicted x_0 is clamped
to [-1, 1] at each step. A run builds it from its config (``from_config``: GUIDANCE_SCALE, NUM_INFERENCE_STEPS,
SAMPLER, DDIM_ETA, CLIP_DENOISED), its checkpoint stores it as a dict (``as_dict``, beside the speed settings ``precision`` and
``channels_last``), and every reader takes it back with ``from_dict``, which names a missing or mistyped field in
one line. A command that overrides a field (``GUIDANCE=``, ``STEPS=``) does so with ``replace``; ``problems``
lists what is wrong with the result before anything is sampled, naming each value as the Makefile spells it.
"""

import dataclasses
import math
import os
from dataclasses import dataclass

from ddpm.files import unwritable_reason
from ddpm.model.diffusion import max_sampling_steps, samplers_for

PRECISIONS = ("auto", "fp32", "bf16")  # "auto": bf16 where the device computes it natively, else fp32 (ADR 0035)
SEED_MAX = 2**64 - 1  # torch.Generator.manual_seed takes at most this (and wraps negatives, so we refuse them)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # what torchvision's save_image writes through PIL, by suffix
_TYPES = {"guidance_scale": (int, float), "num_steps": int, "sampler": str, "eta": (int, float), "clip_x0": bool}
_MAKE_NAMES = {"guidance_scale": "GUIDANCE", "num_steps": "STEPS", "sampler": "SAMPLER", "eta": "ETA"}


@dataclass(frozen=True)
class Sampling:
    guidance_scale: float
    num_steps: int
    sampler: str = "ddim"
    eta: float = 0.0
    clip_x0: bool = True

    @classmethod
    def from_config(cls, cfg: dict) -> "Sampling":
        return cls(
            guidance_scale=cfg["GUIDANCE_SCALE"],
            num_steps=cfg["NUM_INFERENCE_STEPS"],
            sampler=cfg["SAMPLER"],
            eta=cfg["DDIM_ETA"],
            clip_x0=cfg["CLIP_DENOISED"],
        )

    @classmethod
    def from_dict(cls, d) -> "Sampling":
        """The settings a checkpoint or an export stored; ValueError naming what is missing or mistyped."""
        if not isinstance(d, dict):
            raise ValueError(f"sampling settings are a {type(d).__name__}, not a dict")
        wrong = [
            f"{k} is {d[k]!r}, not {_name(t)}" if k in d else f"{k} is missing"
            for k, t in _TYPES.items()
            if k not in d or isinstance(d[k], bool) and t is not bool or not isinstance(d[k], t)
        ]
        if wrong:
            raise ValueError("sampling settings: " + "; ".join(wrong))
        return cls(**{k: d[k] for k in _TYPES})

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **overrides) -> "Sampling":
        """These settings with the given fields changed; ``None`` keeps a field (an option left out)."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def problems(self, timesteps: int, objective: str = "ddpm") -> list:
        """What is wrong with these settings for a schedule of ``timesteps`` and an ``objective`` ("ddpm" or
        "flow"), each naming the Makefile's variable."""
        most = max_sampling_steps(self.sampler, timesteps)
        fits = samplers_for(objective)
        rules = (
            (self.sampler not in fits, f"SAMPLER={self.sampler}: this model samples with {', '.join(fits)}"),
            (
                not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 0),
                f"GUIDANCE={self.guidance_scale:g}: must be a finite number ≥ 0 (1 = no guidance)",
            ),
            (
                not 1 <= self.num_steps <= most,
                f"STEPS={self.num_steps}: must be in [1, {most}] (the checkpoint's "
                "TIMESTEPS" + (" less one for the DPM-Solver++ samplers)" if most < timesteps else ")"),
            ),
            (not 0 <= self.eta <= 1, f"ETA={self.eta}: must be in [0, 1]"),
        )
        return [message for bad, message in rules if bad]


def _name(types) -> str:
    return " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))


def run_problems(*, n: int, n_max: int, seed: int, sweep=()) -> list:
    """What is wrong with a command's other sampling values: ``n`` images (or samples per prompt) in [1, n_max],
    the seed in [0, SEED_MAX], and each guidance scale of a sweep finite and ≥ 0."""
    problems = [
        message
        for bad, message in (
            (not 1 <= n <= n_max, f"N={n}: must be in [1, {n_max}]"),
            (
                not 0 <= seed <= SEED_MAX,
                f"SEED={seed}: must be in [0, {SEED_MAX}] (2**64 - 1, what torch's generator takes)",
            ),
        )
        if bad
    ]
    bad_scales = [s for s in sweep if not (math.isfinite(s) and s >= 0)]
    if bad_scales:
        problems.append(
            f"SWEEP value{'s' if len(bad_scales) > 1 else ''} {', '.join(f'{s:g}' for s in bad_scales)}: "
            "each guidance scale must be a finite number ≥ 0 (1 = no guidance)"
        )
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
