"""The workload that the benchmark and the profiler both time: our UNet as train.py builds it, its size (parameters
and forward FLOPs, which a sweep's compute budget counts), synthetic inputs of the training shapes, one training
step and one guided sampling step as calls.

It lives apart from ``bench.py`` (which adds the diffusers comparison and the report) and ``profiling.py`` (which adds
the profiler), so that neither owns what both need.
"""

from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ddpm.model.diffusion import GaussianDiffusion
from ddpm.model.unet import UNet
from ddpm.run import settings
from ddpm.run.hardware import CompiledOrEager, autocast, memory_format

REPO_ROOT = Path(__file__).resolve().parents[2]


def unet_args(cfg: dict) -> dict:
    """Our UNet's constructor arguments, as train.py builds them (scratch text encoder: context = TEXT_WIDTH)."""
    return settings.unet_args(cfg, context_dim=cfg["TEXT_WIDTH"])


def make_inputs(
    batch: int, *, image_size: int, context_length: int, context_dim: int, timesteps: int, device, seed: int = 0
) -> tuple:
    """x0 in [-1, 1], contexts (B, L, D) and a bool mask with 3..L real tokens per row (SOT … EOT, padding)."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(batch, 3, image_size, image_size, generator=g) * 2 - 1
    ctx = torch.randn(batch, context_length, context_dim, generator=g)
    lengths = torch.randint(3, context_length + 1, (batch,), generator=g)
    mask = torch.arange(context_length)[None] < lengths[:, None]
    t = torch.randint(0, timesteps, (batch,), generator=g)
    return tuple(v.to(device) for v in (x0, t, ctx, mask))


class TrainStep:
    """One forward + backward + AdamW step of the ε-loss (DDPM L_simple) at random t, as train.py does it."""

    def __init__(
        self,
        model: nn.Module,
        diffusion: GaussianDiffusion,
        x0,
        ctx,
        mask,
        *,
        precision: str,
        channels_last: bool,
        compile: bool = False,
        lr: float = 1e-4,
    ):
        self.model, self.diffusion, self.precision = model, diffusion, precision
        self.forward = CompiledOrEager(model, enabled=compile)  # as train.py runs it
        self.fmt = memory_format(channels_last)
        self.model.to(memory_format=self.fmt).train()
        self.x0, self.ctx, self.mask = x0.contiguous(memory_format=self.fmt), ctx, mask
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr)
        self.device = x0.device
        self.gen = torch.Generator(self.device).manual_seed(0)

    def __call__(self) -> None:
        b = self.x0.shape[0]
        t = torch.randint(0, self.diffusion.timesteps, (b,), generator=self.gen, device=self.device)
        noise = torch.randn(self.x0.shape, generator=self.gen, device=self.device).contiguous(memory_format=self.fmt)
        with autocast(self.precision, self.device):
            loss = self.diffusion.loss_per_sample(self.forward, self.x0, t, noise, self.ctx, self.mask).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def sampling_step(
    model: nn.Module,
    images: int,
    *,
    image_size: int,
    context_length: int,
    context_dim: int,
    timesteps: int,
    precision: str,
    channels_last: bool,
    device,
) -> Callable[[], None]:
    """One guided sampling step as a call: a single no-grad forward on 2·images (conditional + null).

    Puts ``model`` in eval mode and the layout ``channels_last`` asks for; the caller restores train mode.
    """
    device = torch.device(device)
    fmt = memory_format(channels_last)
    model.to(memory_format=fmt).eval()
    x, t, ctx, mask = make_inputs(
        2 * images,
        image_size=image_size,
        context_length=context_length,
        context_dim=context_dim,
        timesteps=timesteps,
        device=device,
        seed=1,
    )
    x = x.contiguous(memory_format=fmt)

    def step() -> None:
        with torch.no_grad(), autocast(precision, device):
            model(x, t, ctx, mask)

    return step


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: nn.Module, inputs: tuple) -> int:
    """FLOPs of one fp32 forward on ``inputs`` (FlopCounterMode: convolutions, matmuls, attention)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops()


def model_size(cfg: dict) -> dict:
    """{"params", "fwd_flops_per_image"} of the UNet train.py builds from ``cfg`` (values as in config.py), counted
    on CPU; a run's training compute is 3 × fwd_flops_per_image × images (issue 10's measure)."""
    torch.manual_seed(0)
    model = UNet(**unet_args(cfg)).eval()
    inputs = make_inputs(
        2,
        image_size=cfg["IMAGE_SIZE"],
        context_length=cfg["TEXT_CONTEXT_LENGTH"],
        context_dim=cfg["TEXT_WIDTH"],
        timesteps=cfg["TIMESTEPS"],
        device="cpu",
    )
    return {"params": count_params(model), "fwd_flops_per_image": forward_flops(model, inputs) // 2}
