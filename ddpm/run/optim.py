"""The update rule of a training run: parameter groups, the optimizer, the learning rate at each step, and
gradient accumulation over micro-batches. train.py calls these with plain values read from config.py.

- Parameter groups are built from ``(params, lr)`` pairs, so any part of the model (the UNet, the text encoder,
  a frozen or fine-tuned subset) gets its own learning rate in one place.
- Optimizers: AdamW and Adafactor (Shazeer & Stern 2018) from torch itself, Lion (Chen et al. 2023, "Symbolic
  Discovery of Optimization Algorithms") from the ``lion-pytorch`` package, 8-bit AdamW (Dettmers et al. 2022)
  from ``bitsandbytes`` where it is installed (ADR 0025; 0.50.2 steps on CPU too).
- Learning rate: linear warm-up, then constant or cosine decay to a floor (ADR 0025).
"""

import math

import torch

OPTIMIZERS = ("adamw", "lion", "adafactor", "adamw8bit")
LR_SCHEDULES = ("constant", "cosine")


class OptimizerUnavailable(ValueError):
    """The chosen optimizer cannot run here; the message names the reason and the way out."""


def param_groups(pairs) -> list:
    """``[(params, lr), ...]`` → torch parameter groups; each remembers its peak lr as ``base_lr``.

    Pairs without parameters are dropped; neighbouring pairs with the same lr share one group, so a run whose
    parts all train at one rate has exactly one group (and resumes from checkpoints written before groups existed).
    """
    groups = []
    for params, lr in pairs:
        params = [p for p in params if p.requires_grad]
        if not params:
            continue
        if groups and groups[-1]["base_lr"] == lr:
            groups[-1]["params"] += params
        else:
            groups.append({"params": params, "lr": lr, "base_lr": lr})
    return groups


def build_optimizer(name: str, groups: list, *, betas: tuple, eps: float, weight_decay: float) -> torch.optim.Optimizer:
    """The optimizer ``name`` (one of OPTIMIZERS) over ``groups``; raises OptimizerUnavailable where it can't run.

    ``betas`` and ``eps`` are Adam's (β1, β2) and ε. Lion uses ``betas`` as its own (β1 interpolates the update
    direction, β2 the momentum) and has no ε. Adafactor (torch's, factored second moment, no first moment) uses
    neither: its β2 follows its own decay schedule and its ε pair stays torch's default.
    """
    betas = tuple(betas)
    if name == "adamw":
        return torch.optim.AdamW(groups, betas=betas, eps=eps, weight_decay=weight_decay)
    if name == "adafactor":
        return torch.optim.Adafactor(groups, weight_decay=weight_decay)
    if name == "lion":
        try:
            from lion_pytorch import Lion
        except ImportError as err:
            raise OptimizerUnavailable(
                f"OPTIMIZER = 'lion' needs the lion-pytorch package ({err}); "
                "install requirements.txt: pip install -r requirements.txt"
            ) from None
        return Lion(groups, betas=betas, weight_decay=weight_decay)
    if name == "adamw8bit":
        try:
            import bitsandbytes
        except ImportError as err:
            raise OptimizerUnavailable(
                f"OPTIMIZER = 'adamw8bit' needs bitsandbytes, which requirements.txt leaves out "
                f"({err}): pip install bitsandbytes==0.50.2, or use 'adamw'"
            ) from None
        return bitsandbytes.optim.AdamW8bit(groups, betas=betas, eps=eps, weight_decay=weight_decay)
    raise OptimizerUnavailable(f"OPTIMIZER = {name!r}: expected one of {', '.join(OPTIMIZERS)}")


def lr_factor(step: int, *, warmup_steps: int, schedule: str, total_steps: int, min_ratio: float) -> float:
    """Multiplier of each group's peak lr for optimizer step ``step`` (0-based).

    Linear warm-up ``(step + 1) / warmup_steps`` up to 1; then "constant" stays at 1, and "cosine" decays as
    ``min_ratio + (1 − min_ratio)·½(1 + cos(π·p))`` with p the fraction of the steps after warm-up done (Loshchilov &
    Hutter 2017, SGDR, without restarts), reaching ``min_ratio`` at ``total_steps``.
    """
    warm = min(1.0, (step + 1) / max(1, warmup_steps))
    if schedule == "constant" or step < warmup_steps:
        return warm
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Every group at ``factor`` × its peak lr."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def accumulate(loss_of, batch_size: int, steps: int) -> tuple:
    """Backward over ``steps`` micro-batches of one optimizer step's ``batch_size`` images (ADR 0026).

    ``loss_of(part)`` takes a slice of the batch and returns (the weighted mean loss over it, its per-sample
    losses (b,)). Each micro-batch's loss is scaled by its share of the batch, so the accumulated gradient is that
    of the mean over the whole batch. Returns (loss, per-sample losses (B,)). Every micro-batch's backward runs,
    finite or not: under DDP each backward is a collective that every rank must join; a non-finite loss shows in
    the returned loss and the gradient norm, and the caller skips the update.
    """
    micro = batch_size // steps
    total, parts = 0.0, []
    for i in range(steps):
        part = slice(i * micro, (i + 1) * micro)  # a view: with one step, the whole batch as it was
        weighted, per_sample = loss_of(part)
        weighted = weighted * (micro / batch_size)
        weighted.backward()
        total = total + weighted.detach()
        parts.append(per_sample.detach())
    return total, torch.cat(parts)
