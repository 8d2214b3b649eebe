"""The checkpoint format, in one place: its keys and version, what a resume restores and may change, the one
comparison of two models' architectures, what an export holds, and how checkpoints are written and read.

A checkpoint is one ``torch.save`` dict of tensors and plain Python values (``torch.load(weights_only=True)``
reads it, which refuses pickled code):

    format                         FORMAT_VERSION
    unet_args, text_args,          constructor arguments (ARGS_KEYS): the model is rebuilt from these alone
    diffusion_args
    sampling                       ddpm.run.sampling.Sampling as a dict, with the speed settings precision and
                                   channels_last
    config, provenance             the validated config snapshot and the run's provenance record
    unet, ema_unet                 state_dicts; sampling uses the EMA weights by default
    text_encoder, ema_text_encoder state_dicts, or None for a frozen pretrained tower (not stored)
    optimizer                      the optimizer's state
    step, epoch, batch_in_epoch,   counters: optimizer steps done, epochs completed, batches consumed of the
    perm                           current epoch, and that epoch's shuffled order (exact resume mid-epoch)
    rng                            {"torch": global CPU RNG, "batches": the epoch permutation's generator,
                                    "device": the generator of timesteps, noise and caption dropout (ADR 0017)}
    loss                           the last logged training loss

An export (``ddpm.run.export``) holds the EMA weights as ``unet.*`` and ``text_encoder.*`` tensors and a JSON
description (``describe_export``); ``from_export`` turns the two back into a checkpoint-shaped dict. Writes go
through ``ddpm.files.atomic_write`` (a temporary file in the same folder, fsynced, renamed), so a crash
mid-write leaves the previous checkpoint intact. Every failure is one ``CheckpointError`` naming the file, what
happened and what to do.
"""

import os
import re
from dataclasses import dataclass
from typing import Optional

import torch

from ddpm.files import atomic_write
from ddpm.run.sampling import Sampling

FORMAT_VERSION = 1
ARGS_KEYS = ("unet_args", "text_args", "diffusion_args")
SPEC_KEYS = (*ARGS_KEYS, "sampling", "config", "provenance")
REQUIRED = {
    "format": int,
    "unet_args": dict,
    "text_args": dict,
    "diffusion_args": dict,
    "sampling": dict,
    "ema_unet": dict,
    "config": dict,
    "step": int,
}  # what every checkpoint and export has, by type
EXPORT_FORMAT, EXPORT_VERSION = "ddpm-export", 1
EXPORT_PARTS = ("unet", "text_encoder")  # tensor name prefixes in an export's .safetensors file

# Config keys a resumed run may change with an explicit --set: how long it trains, what it monitors, how its
# previews are drawn and how fast it runs. Everything else (data, model, diffusion, optimisation) makes the run
# what it is; changing it means a new run.
RESUMABLE = (
    "EPOCHS",
    "TRAIN_STEPS",
    "GENERATE_SAMPLES_EVERY",
    "CHECKPOINT_EVERY",
    "SAMPLE_GRID_SIZE",
    "KEEP_CHECKPOINTS",
    "EVAL_EVERY",
    "EVAL_EVERY_STEPS",
    "PROBE_GUIDANCE_SCALE",
    "PROBE_DDIM_ETA",
    "PROBE_NUM_STEPS",
    "GUIDANCE_SCALE",
    "NUM_INFERENCE_STEPS",
    "SAMPLER",
    "DDIM_ETA",
    "CLIP_DENOISED",
    "COMPILE",
    "CHANNELS_LAST",
)

# Constructor arguments added after checkpoints were first written, with the behaviour those checkpoints had.
ADDED_ARGS = {
    "diffusion_args": {"prediction": "epsilon", "objective": "ddpm", "sigma_data": 0.5},  # ADR 0028, 0055
    "unet_args": {
        "linear_bias": True,
        "norm": "group",
        "pooled_text": False,  # ADRs 0029, 0030, 0032
        "scale_shift": False,
    },  # ADR 0034
    "text_args": {"train_tower": False},
}  # ADR 0031

# What torch's weights-only unpickler says when a file asks for more than tensors and containers: a global
# (function or class) outside its allowlist, or a call or construction with one. Other unpickling errors
# ("Unsupported operand", a short read) mean a damaged file.
_REFUSED = re.compile(r"GLOBAL ([\w.]+)|unrecognized function|Can only (?:create new object|build)")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used; the message names the file and the way out."""


class CheckpointSaveError(CheckpointError):
    """A checkpoint that could not be written; the previous ones are untouched and no temporary file is left."""


# ---- what a run's state is, and what a resume puts back --------------------------------------------------
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
        """The checkpoint dict; ``spec`` holds the ``SPEC_KEYS`` (constructor arguments, sampling, config, provenance)."""
        missing = [k for k in SPEC_KEYS if k not in spec]
        if missing:
            raise KeyError(f"checkpoint spec lacks {missing}")
        frozen = self.text_encoder.frozen
        return {
            "format": FORMAT_VERSION,
            **{k: spec[k] for k in SPEC_KEYS},
            "unet": self.unet.state_dict(),
            "ema_unet": self.ema_unet.state_dict(),
            "text_encoder": None if frozen else self.text_encoder.state_dict(),
            "ema_text_encoder": None if frozen else self.ema_text.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "perm": None if self.perm is None else self.perm.cpu(),
            "rng": {
                "torch": torch.get_rng_state(),
                "batches": self.generator.get_state(),
                **({"device": self.draws.get_state()} if self.draws is not None else {}),
            },
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
        if same(config.get(key), value):
            continue
        (changes if key in RESUMABLE else refused)[key] = (config.get(key), value)
    ignored = sorted(k for k in saved if k in current and not same(saved[k], current[k]) and k not in overrides)
    config.update({k: new for k, (_, new) in changes.items()})
    return config, changes, refused, ignored


def same(a, b) -> bool:
    """Equal as config values: tuples and lists alike (run.json went through JSON), bools apart from ints."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b or (type(a) in (int, float) and type(b) in (int, float) and a == b)


def architecture_diff(a: dict, b: dict, *, names=("checkpoint", "run"), ignore=(), label=None, sep=" vs ") -> list:
    """``["unet_args.base_channels: checkpoint 32 vs run 64", ...]``: every constructor argument in which two
    checkpoint-shaped dicts (or a checkpoint and a run's spec) differ. The one comparison that resume,
    ``--init-from`` and sample.py use. ``ignore``: argument names to leave out (today's config has no caption
    vocabulary); ``label(group, arg)``: how to name an argument (sample.py names the config key)."""
    diffs = []
    for group in ARGS_KEYS:
        old, new = with_added_args({group: dict(a[group])})[group], with_added_args({group: dict(b[group])})[group]
        for key in sorted((set(old) | set(new)) - set(ignore)):
            if not same(old.get(key), new.get(key)):
                shown = [
                    v if not isinstance(v, tuple) or len(v) < 12 else f"{len(v)} ids"
                    for v in (old.get(key), new.get(key))
                ]
                name = label(group, key) if label else f"{group}.{key}"
                diffs.append(f"{name}: {names[0]} {shown[0]!r}{sep}{names[1]} {shown[1]!r}")
    return diffs


def load_weights(path: str, args_name: str, module: torch.nn.Module, state) -> None:
    """``module.load_state_dict(state)``, or one CheckpointError listing the keys and shapes that disagree
    (rather than torch's many-line ``size mismatch`` report)."""
    expected = module.state_dict()
    state = state if isinstance(state, dict) else {}
    problems = [
        f"{k}: {tuple(state[k].shape)} in the weights, {tuple(v.shape)} from {args_name}"
        for k, v in expected.items()
        if k in state and getattr(state[k], "shape", None) != v.shape
    ]
    problems += [f"{k}: missing from the weights" for k in expected if k not in state]
    problems += [f"{k}: in the weights, not in a model built from {args_name}" for k in state if k not in expected]
    if problems:
        more = f"; and {len(problems) - 2} more" if len(problems) > 2 else ""
        raise CheckpointError(
            f"{path}: inconsistent checkpoint, its recorded {args_name} do not match its weights "
            f"({'; '.join(problems[:2])}{more}); use another checkpoint"
        )
    module.load_state_dict(state)


# ---- validation of what was read --------------------------------------------------------------------------
def with_added_args(ckpt: dict) -> dict:
    """``ckpt`` with each ``ADDED_ARGS`` entry its constructor arguments lack filled in: a checkpoint or export
    written before an argument existed had its old behaviour, and compares equal to a run that asks for it."""
    for key, added in ADDED_ARGS.items():
        if key in ckpt:
            ckpt[key] = {**added, **ckpt[key]}
    return ckpt


def validated(ckpt, path: str) -> dict:
    """``ckpt`` when it has every ``REQUIRED`` key with its type, a known version and readable sampling settings;
    else one CheckpointError naming what is wrong. Missing constructor arguments of older files are filled in."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a checkpoint of this repo (a {type(ckpt).__name__}); use another one")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint of this repo (missing {', '.join(missing)}); use another one")
    wrong = [
        f"{k} is {type(ckpt[k]).__name__} {ckpt[k]!r:.40}, not {t.__name__}"
        for k, t in REQUIRED.items()
        if not isinstance(ckpt[k], t) or isinstance(ckpt[k], bool)
    ]
    if wrong:
        raise CheckpointError(f"{path}: not a checkpoint of this repo ({'; '.join(wrong)}); use another one")
    if ckpt["format"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {ckpt['format']} is newer than this code ({FORMAT_VERSION}); update the repo"
        )
    try:
        Sampling.from_dict(ckpt["sampling"])
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}; use another checkpoint, or export it again") from None
    return with_added_args(ckpt)


def sampling_of(ckpt: dict) -> Sampling:
    return Sampling.from_dict(ckpt["sampling"])


# ---- what an export holds ---------------------------------------------------------------------------------
def export_tensors(ckpt: dict) -> dict:
    """The tensors of an export: the EMA UNet as ``unet.<name>``, the EMA text encoder as ``text_encoder.<name>``
    where it was trained (a frozen pretrained tower is rebuilt from its name, as in checkpoints)."""
    tensors = {f"unet.{k}": v.detach().contiguous() for k, v in ckpt["ema_unet"].items()}
    if ckpt.get("ema_text_encoder") is not None:
        tensors.update({f"text_encoder.{k}": v.detach().contiguous() for k, v in ckpt["ema_text_encoder"].items()})
    return tensors


def _tuples(value):
    """JSON lists back to the tuples the constructors were given (checkpoint args compare equal again)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def from_export(meta: dict, tensors: dict, path: str) -> dict:
    """A checkpoint-shaped dict (EMA weights under both ``ema_*`` and plain keys) from an export's JSON and tensors."""
    parts = {
        part: {k[len(part) + 1 :]: v for k, v in tensors.items() if k.startswith(part + ".")} for part in EXPORT_PARTS
    }
    if not parts["unet"]:
        raise CheckpointError(f"{path}: holds no unet.* tensors; export the model again")
    text = parts["text_encoder"] or None
    prov = meta.get("provenance") if isinstance(meta.get("provenance"), dict) else {}
    ckpt = {
        "format": FORMAT_VERSION,
        **{k: meta[k] for k in ("sampling", "config")},
        "provenance": prov,
        "step": prov.get("step"),
        "run": prov.get("run"),
        "ema_unet": parts["unet"],
        "unet": parts["unet"],
        "ema_text_encoder": text,
        "text_encoder": text,
    }
    for key in (*ARGS_KEYS, "config"):
        if not isinstance(meta.get(key), dict):
            raise CheckpointError(
                f"{path}: its JSON's {key} is {type(meta.get(key)).__name__}, not an object; export the model again"
            )
        ckpt[key] = {n: _tuples(v) for n, v in meta[key].items()}
    ckpt["step"] = ckpt["step"] if isinstance(ckpt["step"], int) else 0
    return validated(ckpt, path)


# ---- files ------------------------------------------------------------------------------------------------
def _what_happened(err: BaseException) -> str:
    """The root cause of a failed write in words: the first OSError in the chain ("no space left on device"),
    else the error's own first line (torch wraps a failed write in a zip-writer RuntimeError)."""
    seen = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return (seen.strerror or os.strerror(seen.errno)).lower()
        seen = seen.__cause__ or seen.__context__
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}"


def save_atomic(obj: dict, path: str) -> None:
    """Write ``obj`` to ``path`` durably through a temporary file in the same folder; raises ``CheckpointSaveError``."""

    def write(tmp):
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    try:
        atomic_write(path, write, durable=True)
    except Exception as err:  # an interrupt stays an interrupt
        raise CheckpointSaveError(
            f"could not save checkpoint {path}: {_what_happened(err)}; the previous "
            f"checkpoints in {os.path.dirname(os.path.abspath(path))} are untouched"
        ) from None


def load_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file; check the path, or use another one")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, zero bytes, random bytes, or a pickle with code in it
        refused = _REFUSED.search(str(err))
        if refused:  # never pass on torch's advice to retry with weights_only=False
            asks = f" (it asks for {refused.group(1)})" if refused.group(1) else ""
            raise CheckpointError(
                f"{path}: holds objects that are not plain tensors{asks} and was refused for "
                "safety; do not load it, use another checkpoint"
            ) from None
        detail = (str(err).strip().splitlines() or [""])[0].split(". ")[0][:120]
        detail = "" if detail.startswith("Weights only load failed") else detail  # torch's preamble, not the cause
        raise CheckpointError(
            f"{path}: not a readable checkpoint, truncated or corrupt ({type(err).__name__}"
            f"{': ' + detail if detail else ''}); use another one"
        ) from None
    return validated(ckpt, path)
