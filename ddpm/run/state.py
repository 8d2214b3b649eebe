"""The state of a training run: what a checkpoint holds, how resume puts it back, and what a resume may change.

This is the one place that defines a checkpoint's contents. ``train.py`` writes ``TrainState.to_checkpoint``
through ``ddpm.run.checkpoint.save_atomic``, resume calls ``TrainState.restore``, and sampling
(``Pipeline.from_checkpoint``) reads the weights and constructor arguments named in ``SPEC_KEYS``. A checkpoint
is a dict of tensors and plain Python values (``torch.load(weights_only=True)`` reads it):

    format                         FORMAT_VERSION of ddpm/run/checkpoint.py
    unet_args, text_args,          constructor arguments: the model is rebuilt from these alone
    diffusion_args, sampling       (sampling: guidance, steps, sampler, η, clip, precision, layout)
    config, provenance             the validated config snapshot and the run's provenance record
    unet, ema_unet                 state_dicts; sampling uses the EMA weights by default
    text_encoder, ema_text_encoder state_dicts, or None for a frozen pretrained tower (not stored)
    optimizer                      AdamW state
    step, epoch, batch_in_epoch,   counters: optimizer steps done, epochs completed, batches consumed of the
    perm                           current epoch, and that epoch's shuffled order (exact resume mid-epoch)
    rng                            {"torch": global CPU RNG, "batches": the epoch permutation's generator,
                                    "device": the generator of timesteps, noise and caption dropout (ADR 0017)}
    loss                           the last logged training loss
"""

from dataclasses import dataclass
from typing import Optional

import torch

from ddpm.run.checkpoint import FORMAT_VERSION

SPEC_KEYS = ("unet_args", "text_args", "diffusion_args", "sampling", "config", "provenance")

# Config keys a resumed run may change with an explicit --set: how long it trains, what it monitors, how its
# previews are drawn and how fast it runs. Everything else (data, model, diffusion, optimisation) makes the run
# what it is; changing it means a new run.
RESUMABLE = ("EPOCHS", "GENERATE_SAMPLES_EVERY", "CHECKPOINT_EVERY", "SAMPLE_GRID_SIZE", "KEEP_CHECKPOINTS",
             "EVAL_EVERY", "EVAL_EVERY_STEPS", "PROBE_GUIDANCE_SCALE", "PROBE_DDIM_ETA", "GUIDANCE_SCALE",
             "NUM_INFERENCE_STEPS", "SAMPLER", "DDIM_ETA", "CLIP_DENOISED", "COMPILE", "CHANNELS_LAST")


@dataclass
class TrainState:
    """Everything a training run changes as it goes: the modules, the optimizer, the batch generator, counters."""

    unet: torch.nn.Module
    ema_unet: torch.nn.Module
    text_encoder: torch.nn.Module
    ema_text: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    perm: Optional[torch.Tensor] = None
    draws: Optional[torch.Generator] = None  # on the training device; checkpoints before ADR 0017 lack it

    def to_checkpoint(self, spec: dict, *, loss: float) -> dict:
        """The checkpoint dict; ``spec`` holds the ``SPEC_KEYS`` (constructor arguments, config, provenance)."""
        missing = [k for k in SPEC_KEYS if k not in spec]
        if missing:
            raise KeyError(f"checkpoint spec lacks {missing}")
        frozen = self.text_encoder.frozen
        return {
            "format": FORMAT_VERSION, **{k: spec[k] for k in SPEC_KEYS},
            "unet": self.unet.state_dict(), "ema_unet": self.ema_unet.state_dict(),
            "text_encoder": None if frozen else self.text_encoder.state_dict(),
            "ema_text_encoder": None if frozen else self.ema_text.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "perm": None if self.perm is None else self.perm.cpu(),
            "rng": {"torch": torch.get_rng_state(), "batches": self.generator.get_state(),
                    **({"device": self.draws.get_state()} if self.draws is not None else {})},
            "loss": loss,
        }

    def restore(self, ckpt: dict) -> None:
        """Put a checkpoint's weights, optimizer state, counters and RNG states back (exact resume)."""
        self.unet.load_state_dict(ckpt["unet"])
        self.ema_unet.load_state_dict(ckpt["ema_unet"])
        if not self.text_encoder.frozen:
            self.text_encoder.load_state_dict(ckpt["text_encoder"])
            self.ema_text.load_state_dict(ckpt["ema_text_encoder"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.step, self.epoch = ckpt["step"], ckpt["epoch"]
        self.batch_in_epoch, self.perm = ckpt["batch_in_epoch"], ckpt["perm"]
        torch.set_rng_state(ckpt["rng"]["torch"])
        self.generator.set_state(ckpt["rng"]["batches"])
        if self.draws is not None and "device" in ckpt["rng"]:
            self.draws.set_state(ckpt["rng"]["device"])


def resumed_config(saved: dict, current: dict, overrides: dict) -> tuple:
    """The config a resumed run continues with: its own, plus the ``--set`` overrides that may change.

    ``saved``: the checkpoint's config; ``current``: config.py's values; ``overrides``: this command's ``--set``.
    Returns (config, changes, refused, ignored): ``changes`` KEY → (old, new) applied; ``refused`` the same for
    overrides of keys outside ``RESUMABLE``; ``ignored`` the keys where config.py now differs from the run
    (not applied: a run keeps what it was started with). Keys added to the config since the run started take
    config.py's value.
    """
    config = {**{k: v for k, v in current.items() if k not in saved}, **saved}
    changes, refused = {}, {}
    for key, value in overrides.items():
        if _same(config.get(key), value):
            continue
        (changes if key in RESUMABLE else refused)[key] = (config.get(key), value)
    ignored = sorted(k for k in saved if k in current and not _same(saved[k], current[k]) and k not in overrides)
    config.update({k: new for k, (_, new) in changes.items()})
    return config, changes, refused, ignored


def _same(a, b) -> bool:
    """Equal as config values: tuples and lists alike (run.json went through JSON), bools apart from ints."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b or (type(a) in (int, float) and type(b) in (int, float) and a == b)
