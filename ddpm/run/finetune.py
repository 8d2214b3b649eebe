"""Fine-tuning: start a new run from a base model's weights, and train only a share of the UNet.

``init_from`` loads a training checkpoint or an exported model (``ddpm.run.export.load_model``), refuses a base
whose architecture differs from the run's (one error listing every differing key), and copies the base's EMA
weights into the UNet and its EMA copy (and into the text encoder and its EMA copy where the text encoder is
trained; a frozen pretrained tower is the same either way). The optimizer, step counter and RNG stay the new
run's: a fine-tuning run is an ordinary run at step 0 whose provenance names its base.

``select_trainable`` freezes the UNet parts not named in ``TRAIN_UNET_PARTS`` (``requires_grad=False``, and they
are left out of the optimizer, so AdamW's decoupled weight decay cannot move them either) and reports the share
trained, as the SDXL model log this repo grew from does ("71% UNET").
"""

import hashlib
import os

from ddpm.model.unet import TransformerBlock
from ddpm.run.checkpoint import CheckpointError, architecture_diff, load_weights
from ddpm.run.export import load_model

UNET_PARTS = ("all", "down", "mid", "up", "attention")  # "attention": every TransformerBlock, at any level


class FinetuneError(ValueError):
    """A base model that cannot start this run; the message names the file and the way out."""


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def init_from(
    path: str, *, unet, ema_unet, text_encoder, ema_text, unet_args: dict, text_args: dict, diffusion_args: dict
) -> dict:
    """Copy the base's EMA weights into the run's modules; returns the base's provenance entry for run.json."""
    try:
        base = load_model(path)
    except CheckpointError as err:
        raise FinetuneError(f"--init-from: {err}") from None
    diffs = architecture_diff(
        base, {"unet_args": unet_args, "text_args": text_args, "diffusion_args": diffusion_args}, names=("base", "run")
    )
    if diffs:
        raise FinetuneError(
            f"--init-from {path}: the base's architecture differs from this run's config in "
            f"{len(diffs)} key(s):\n  "
            + "\n  ".join(diffs)
            + "\nSet the run's config to the base's values (its JSON or run.json shows them), or pick "
            "another base"
        )
    try:  # its JSON may describe this run while its weights are another model's: one line, not torch's report
        for module in (unet, ema_unet):
            load_weights(path, "unet_args", module, base["ema_unet"])
        if not text_encoder.frozen:
            for module in (text_encoder, ema_text):
                load_weights(path, "text_args", module, base["ema_text_encoder"])
    except CheckpointError as err:
        raise FinetuneError(f"--init-from: {err}") from None
    prov = base.get("provenance") or {}
    run = base.get("run") or os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(path))))
    return {
        "path": os.path.abspath(path),
        "sha256": sha256(path),
        "run": run,
        "step": base.get("step"),
        "adr": prov.get("adr"),
        "config_hash": prov.get("config_hash"),
        "git_commit": prov.get("git_commit"),
    }


def parse_parts(value: str) -> tuple:
    """``"mid,up"`` → ``("mid", "up")``; raises ValueError naming the allowed parts."""
    parts = tuple(p.strip() for p in value.split(",") if p.strip())
    wrong = [p for p in parts if p not in UNET_PARTS]
    if not parts or wrong or ("all" in parts and len(parts) > 1):
        raise ValueError(
            f"TRAIN_UNET_PARTS={value!r}: must be 'all' or a comma-separated list of {', '.join(UNET_PARTS[1:])}"
        )
    return parts


def unet_part_names(unet, parts: tuple) -> set:
    """Names of the UNet parameters that belong to ``parts``."""
    if "all" in parts:
        return {name for name, _ in unet.named_parameters()}
    names = {name for name, _ in unet.named_parameters() if name.split(".")[0] in parts}
    if "attention" in parts:
        for prefix, module in unet.named_modules():
            if isinstance(module, TransformerBlock):
                names |= {f"{prefix}.{name}" for name, _ in module.named_parameters()}
    return names


def select_trainable(unet, parts: tuple) -> tuple:
    """Freeze every UNet parameter outside ``parts``; returns (trainable parameters, trained share, description)."""
    chosen = unet_part_names(unet, parts)
    trainable, trained, total = [], 0, 0
    for name, param in unet.named_parameters():
        param.requires_grad_(name in chosen)
        total += param.numel()
        if name in chosen:
            trainable.append(param)
            trained += param.numel()
    share = trained / total
    return trainable, share, f"{share:.0%} UNET ({trained:,} of {total:,} parameters; parts: {','.join(parts)})"
