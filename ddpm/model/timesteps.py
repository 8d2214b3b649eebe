"""Where training spends its timesteps: the density the loss's noise levels are drawn from.

- ``uniform``: t uniform over the schedule's steps (DDPM, Ho et al. 2020, Algorithm 1), or over (0, 1) for flow
  matching: the repo's behaviour before these options, draw for draw.
- ``logit_normal``: u = sigmoid(n), n ~ N(loc, scale) (Esser et al. 2024, "Scaling Rectified Flow Transformers", SD3,
  §3.1: loc 0, scale 1), which puts the weight on the middle of the path and little on its ends; t = ⌊u·T⌋ on a
  discrete schedule, u itself for flow matching. Its density is ``logit_normal_pdf``.
- ``lognormal_sigma``: ln σ ~ N(loc, scale) (Karras et al. 2022, EDM, §5: P_mean = −1.2, P_std = 1.2), the σ of
  x = x_0 + σ·ε; on the variance-preserving schedule, the step whose σ_t is nearest in log. Flow matching's path
  x_t = (1 − t)·x_0 + t·ε has σ = t/(1 − t) in the same sense, so t = σ/(1 + σ) there.

``loc`` and ``scale`` are DENSITY_LOC and DENSITY_SCALE; the uniform density draws exactly what
``torch.randint(0, T)`` (or ``torch.rand``) draws from the same generator, so the default's runs are unchanged.
"""

import math
from typing import Optional

import torch

DENSITIES = ("uniform", "logit_normal", "lognormal_sigma")


def logit_normal_pdf(u: torch.Tensor, loc: float, scale: float) -> torch.Tensor:
    """The logit-normal density on (0, 1): 1/(s√(2π)) · 1/(u(1 − u)) · exp(−(logit u − m)²/(2s²)) (SD3 eq. 19)."""
    logit = torch.log(u / (1 - u))
    return torch.exp(-((logit - loc) ** 2) / (2 * scale**2)) / (scale * math.sqrt(2 * math.pi) * u * (1 - u))


def draw(
    density: str,
    n: int,
    *,
    generator: torch.Generator,
    device,
    loc: float = 0.0,
    scale: float = 1.0,
    timesteps: Optional[int] = None,
    sigmas: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """n training timesteps: (n,) long in [0, timesteps) on a discrete schedule (``timesteps`` given, with its
    ``sigmas`` (T,) for ``lognormal_sigma``), else (n,) float in (0, 1), flow matching's t."""
    discrete = timesteps is not None
    if density == "uniform":
        if discrete:
            return torch.randint(0, timesteps, (n,), generator=generator, device=device)
        return torch.rand(n, generator=generator, device=device).clamp(1e-5, 1 - 1e-5)
    z = torch.randn(n, generator=generator, device=device)
    if density == "logit_normal":
        u = torch.sigmoid(loc + scale * z)
        return (u * timesteps).long().clamp(0, timesteps - 1) if discrete else u.clamp(1e-5, 1 - 1e-5)
    if density == "lognormal_sigma":
        sigma = torch.exp(loc + scale * z)
        if not discrete:
            return (sigma / (1 + sigma)).clamp(1e-5, 1 - 1e-5)
        log_table = sigmas.to(device).log()  # increasing in t
        idx = torch.searchsorted(log_table, sigma.log()).clamp(1, timesteps - 1)
        nearer_below = (sigma.log() - log_table[idx - 1]) < (log_table[idx] - sigma.log())
        return torch.where(nearer_below, idx - 1, idx)
    raise ValueError(f"TIMESTEP_DENSITY = {density!r}: one of {', '.join(DENSITIES)}")
