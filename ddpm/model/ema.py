"""Exponential moving average of weights (Polyak averaging; used for sampling, as in DDPM §4 and most successors)."""

import torch


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, *, decay: float, step: int) -> None:
    """θ_ema ← d·θ_ema + (1 − d)·θ with d = min(decay, (1 + step) / (10 + step)).

    The warm-up of d (as in diffusers' EMAModel) lets the average follow the fast early changes instead of
    dragging the random initialisation along for thousands of steps: in a short CPU run that matters.
    """
    d = min(decay, (1 + step) / (10 + step))
    ema_params = [p for p in ema.parameters()]
    params = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_params, params, 1 - d)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)
