"""One optimizer step of a built run: the batch and its draws, the loss over micro-batches, clipping, the guard
against non-finite values, the update and the EMA copies.

``draw(run)`` takes the next slice of the epoch's permutation and draws, for the *global* batch, the caption
dropout (classifier-free guidance), the timesteps and the noise, from the run's seeded generator on the device,
so that every world size sees the same numbers (ADR 0017). ``optimizer_step(run, batch)`` then computes the
Min-SNR-weighted loss (ADR 0010) over ``GRAD_ACCUM_STEPS`` micro-batches (ADR 0026), clips the gradient norm and
steps, unless the loss or the norm is non-finite on any rank: then no rank steps, no EMA moves, and the step
counter stays, so nothing non-finite can be checkpointed.
"""

from dataclasses import dataclass

import torch

from ddpm.model import timesteps
from ddpm.model.diffusion import make_noise
from ddpm.model.ema import ema_update
from ddpm.run import optim
from ddpm.run.hardware import autocast


@dataclass
class Batch:
    x0: torch.Tensor  # (b, 3, H, W) in [-1, 1]: this rank's images
    caption: torch.Tensor  # (b,) row in run.tokens: the caption, or the null prompt where dropped
    t: torch.Tensor  # (b,) timesteps in [0, T), or flow matching's t in (0, 1)
    noise: torch.Tensor  # (b, 3, H, W)


@dataclass
class Stepped:
    stepped: bool  # False: a non-finite loss or gradient norm on some rank, the update skipped
    loss: torch.Tensor  # () the weighted mean loss, on the device
    losses: torch.Tensor  # (b,) unweighted per-sample losses, for the loss-by-timestep logs
    t: torch.Tensor  # (b,)
    grad_norm: torch.Tensor  # () before clipping
    what: str = ""  # "loss" or "gradient norm" where not stepped: this rank's view


def draw(run) -> Batch:
    """This rank's slice of the next batch and the global batch's draws; starts a new epoch's permutation when due."""
    state, cfg, bs = run.state, run.cfg, run.cfg["BATCH_SIZE"]
    if state.perm is None or state.batch_in_epoch >= run.steps_per_epoch:
        state.perm, state.batch_in_epoch = torch.randperm(len(run.images), generator=state.generator).to(run.device), 0
    idx = run.world.shard(state.perm[state.batch_in_epoch * bs : (state.batch_in_epoch + 1) * bs])
    x0 = run.images[idx].contiguous(memory_format=run.memory_format)
    drop, t, noise = run.world.shard(  # drawn on the device for the GLOBAL batch, so every world size sees the same
        torch.rand(bs, generator=state.draws, device=run.device) < cfg["CAPTION_DROPOUT"],  # classifier-free guidance
        draw_timesteps(run, bs),
        make_noise((bs, *x0.shape[1:]), cfg["OFFSET_NOISE"], state.draws, device=run.device),
    )  # offset noise (ADR 0028)
    return Batch(x0=x0, caption=torch.where(drop, run.null_index, run.caption_index[idx]), t=t, noise=noise)


def draw_timesteps(run, n: int) -> torch.Tensor:
    """n training timesteps from TIMESTEP_DENSITY (ddpm.model.timesteps): steps of the schedule, or flow's t."""
    cfg, discrete = run.cfg, run.cfg["OBJECTIVE"] == "ddpm"
    return timesteps.draw(
        cfg["TIMESTEP_DENSITY"],
        n,
        generator=run.state.draws,
        device=run.device,
        loc=cfg["DENSITY_LOC"],
        scale=cfg["DENSITY_SCALE"],
        timesteps=cfg["TIMESTEPS"] if discrete else None,
        sigmas=run.diffusion.sigmas if discrete else None,
    )


def learning_rate(run) -> float:
    """Set every group's rate for the coming step (warm-up, then the schedule); returns the UNet's, for the logs."""
    cfg = run.cfg
    factor = optim.lr_factor(
        run.state.step,
        warmup_steps=cfg["WARMUP_STEPS"],
        schedule=cfg["LR_SCHEDULE"],
        total_steps=run.schedule_steps,
        min_ratio=cfg["LR_MIN_RATIO"],
    )
    optim.set_lr(run.optimizer, factor)
    return cfg["LEARNING_RATE"] * factor


def optimizer_step(run, batch: Batch) -> Stepped:
    """Loss, backward, clip and, where every rank's loss and norm are finite, the update and the EMA copies."""
    cfg, state, frozen = run.cfg, run.state, run.text_encoder.frozen

    def loss_of(part):  # one micro-batch: (weighted mean loss, unweighted per-sample losses for the logs)
        cap = batch.caption[part]
        with autocast(run.precision, run.device):
            with torch.set_grad_enabled(not frozen):  # frozen and uncached: per batch, no graph
                context = run.cached[cap] if run.cached is not None else run.encode(run.tokens[cap])
            part_losses = run.diffusion.loss_per_sample(
                run.unet_step, batch.x0[part], batch.t[part], batch.noise[part], context, run.token_mask[cap]
            )  # (b,)
        return (run.diffusion.min_snr_weights(batch.t[part], cfg["MIN_SNR_GAMMA"]) * part_losses).mean(), part_losses

    # Backward runs even when the loss is not finite: DDP's gradient all-reduce needs every rank, and carries a NaN
    # to all of them; the flag's all-reduce is the one host read per step (ADR 0017).
    run.optimizer.zero_grad(set_to_none=True)
    loss, losses = optim.accumulate(loss_of, len(batch.x0), cfg["GRAD_ACCUM_STEPS"])  # (ADR 0026)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.trainable, cfg["GRAD_CLIP"])
    state.batch_in_epoch += 1
    if not run.world.all_true(torch.isfinite(loss) & torch.isfinite(grad_norm)):
        run.optimizer.zero_grad(set_to_none=True)
        return Stepped(False, loss, losses, batch.t, grad_norm, "loss" if not torch.isfinite(loss) else "gradient norm")
    run.optimizer.step()
    ema_update(state.ema_unet, run.unet, decay=cfg["EMA_DECAY"], step=state.step)
    if not frozen:
        ema_update(state.ema_text, run.text_encoder, decay=cfg["EMA_DECAY"], step=state.step)
    state.step += 1
    return Stepped(True, loss, losses, batch.t, grad_norm)


def end_of_epoch(run) -> bool:
    """Whether the step just taken consumed the epoch's last batch; counts the epoch when it did. Epochs are counted
    in batches drawn, so a skipped last batch still ends its epoch."""
    if run.state.batch_in_epoch >= run.steps_per_epoch:
        run.state.epoch += 1
        return True
    return False
