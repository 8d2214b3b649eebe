"""A trained model to hand on: EMA weights as ``.safetensors``, and beside it a JSON file that rebuilds it.

``model.safetensors`` holds only tensors (no pickle, no optimizer state, no RNG): what
``ddpm.run.checkpoint.export_tensors`` says an export holds. ``model.json`` (same stem) holds the constructor
arguments, the sampling settings, the config snapshot and the provenance (config hash, ADR, commit, dataset,
source run and step). The same JSON is also in the safetensors header (``__metadata__["ddpm"]``), so the weights
file alone still says what it is. Both files load with ``safetensors`` and ``json`` alone, and are written
atomically with the permissions the umask gives (a shared model is readable by others); where the second file
cannot be written, the first is taken back, so a full disk leaves no half export.

``load_model(path)`` reads either a training checkpoint or an export and returns the checkpoint-shaped dict that
``Pipeline.from_checkpoint``, ``sample.py``, ``make eval`` and ``train.py --init-from`` use.
Write: ``python -m ddpm.run.export --ckpt runs/<run>/checkpoints/<file>.pt [--out model.safetensors]`` (make export).
"""

import argparse
import json
import os
import sys

from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ddpm.cli import command_line, error
from ddpm.files import unwritable_reason, write_bytes, write_text
from ddpm.run.checkpoint import (
    ARGS_KEYS,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    CheckpointError,
    export_tensors,
    from_export,
    load_checkpoint,
)
from ddpm.run.folder import checkpoint_at

SUFFIX = ".safetensors"


def json_path(weights_path: str) -> str:
    """``model.safetensors`` → ``model.json``: the description that sits beside the weights."""
    return os.path.splitext(weights_path)[0] + ".json"


def is_export(path: str) -> bool:
    return str(path).endswith(SUFFIX)


def describe(ckpt: dict, *, source: str) -> dict:
    """The JSON beside the weights: everything needed to rebuild and sample, and where the weights came from."""
    prov = ckpt.get("provenance") or {}
    cfg = ckpt["config"]
    run_dir = os.path.dirname(os.path.dirname(os.path.abspath(source)))
    frozen_text = ckpt.get("ema_text_encoder") is None
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "weights": "EMA only (no optimizer state, no RNG); tensors unet.* and "
        + (
            "no text_encoder.*: the text encoder is a frozen pretrained open_clip tower, rebuilt from "
            "text_args (open_clip_model, open_clip_pretrained), not stored"
            if frozen_text
            else "text_encoder.*"
        ),
        **{key: ckpt[key] for key in ARGS_KEYS},
        "sampling": ckpt["sampling"],
        "config": cfg,
        "provenance": {
            "config_hash": prov.get("config_hash"),
            "adr": prov.get("adr"),
            "git_commit": prov.get("git_commit"),
            "git_dirty": prov.get("git_dirty"),
            "exploratory": prov.get("exploratory"),
            "base": prov.get("base"),
            "dataset": {
                k: cfg.get(k)
                for k in ("DATASET", "DATASET_SPLIT", "DATASET_SIZE", "DATASET_SEED", "IMAGE_SIZE")
                if k in cfg
            },
            "run": os.path.basename(run_dir),
            "step": ckpt["step"],
            "source_checkpoint": os.path.basename(source),
        },
    }


def export(ckpt: dict, out: str, *, source: str) -> dict:
    """Write ``out`` (.safetensors) and its JSON from a loaded checkpoint; both atomically. Returns the JSON.
    Raises ValueError for a wrong name, OSError when the files cannot be written (neither is left behind)."""
    if not is_export(out):
        raise ValueError(f"--out {out}: the weights file must end in {SUFFIX}")
    meta = describe(ckpt, source=source)
    text = json.dumps(meta, default=str)
    blob = save(export_tensors(ckpt), metadata={"ddpm": text})
    existed = os.path.exists(out)
    write_bytes(blob, out)
    try:
        write_text(json.dumps(meta, indent=2, default=str) + "\n", json_path(out))
    except BaseException:
        if not existed:  # no weights without the JSON that rebuilds them
            os.remove(out)
        raise
    return meta


def load_export(path: str) -> dict:
    """A checkpoint-shaped dict from an export; a missing or unreadable file raises CheckpointError in one line."""
    meta_path = json_path(path)
    for p in (path, meta_path):
        if not os.path.isfile(p):
            raise CheckpointError(
                f"{p}: no such file; an exported model is a {SUFFIX} file with its .json beside it "
                "(make export CKPT=...)"
            )
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{meta_path}: not readable JSON ({str(err)[:200]}); export the model again") from None
    missing = [k for k in ("format", *ARGS_KEYS, "sampling", "config") if not isinstance(meta, dict) or k not in meta]
    if missing or meta.get("format") != EXPORT_FORMAT:
        raise CheckpointError(
            f"{meta_path}: not an export of this repo (missing {', '.join(missing) or 'format'}); "
            "export the model again"
        )
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or version > EXPORT_VERSION:
        raise CheckpointError(
            f"{meta_path}: export format {version!r} is not one this code reads (up to "
            f"{EXPORT_VERSION}); update the repo, or export the model again"
        )
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({str(err)[:200]}); it may be truncated, export the model again"
        ) from None
    return from_export(meta, tensors, meta_path)


def load_model(path: str) -> dict:
    """A training checkpoint (.pt) or an exported model (.safetensors + .json), as a checkpoint-shaped dict."""
    return load_export(path) if is_export(path) else load_checkpoint(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ddpm.run.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", required=True, help="training checkpoint (runs/<run>/checkpoints/*.pt) or run folder")
    p.add_argument("--out", help="weights file (default: the checkpoint's name with .safetensors)")
    args = p.parse_args(command_line(argv))
    out = args.out
    try:
        path, ckpt = checkpoint_at(args.ckpt)  # a run folder: its newest checkpoint that loads
        out = args.out or os.path.splitext(path)[0] + SUFFIX
        reason = unwritable_reason(os.path.dirname(os.path.abspath(out)))
        if reason:
            raise ValueError(f"OUT={out}: {reason}; choose another place")
        meta = export(ckpt, out, source=path)
    except (CheckpointError, ValueError) as err:
        return error("export", str(err))
    except OSError as err:
        return error(
            "export",
            f"could not write {out} or its .json ({(err.strerror or str(err)).lower()}); nothing "
            "was written: free space, or choose another OUT=",
            code=1,
        )
    n = sum(v.numel() for k in ("ema_unet", "ema_text_encoder") for v in (ckpt.get(k) or {}).values())
    print(f"exported {meta['provenance']['run']} step {ckpt['step']} ({n:,} EMA parameters) → {out} + {json_path(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
