"""Checkpoints that describe themselves, written atomically, read without executing code.

A checkpoint is one ``torch.save`` dict of tensors and plain Python values: weights, EMA weights, optimizer
state, counters, RNG states, each component's constructor arguments and the config snapshot, so that
``sample.py`` rebuilds everything from the file alone. It is written to a temporary file in the target's own
folder, fsynced and renamed over the target, so a crash mid-write leaves the previous checkpoint intact
(a rename within one file system is atomic; staging in /tmp would not be). It is read with
``weights_only=True``, which refuses pickled code.
"""

import glob
import os
import tempfile
import warnings

import torch

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "unet_args", "text_args", "diffusion_args", "sampling", "ema_unet", "config", "step")
TMP_PREFIX = ".tmp-"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used; the message names the file and the way out."""


def save_atomic(obj: dict, path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


# Constructor arguments added after checkpoints were first written, with the behaviour those checkpoints had.
ADDED_ARGS = {"diffusion_args": {"prediction": "epsilon"}}


def load_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, zero bytes, random bytes, or a pickle with code in it
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {str(err)[:200]}); "
                              "it may be truncated or from another program, use another one") from err
    missing = [k for k in REQUIRED_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint of this repo (missing {', '.join(missing)})")
    if ckpt["format"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {ckpt['format']} is newer than this code ({FORMAT_VERSION}); update the repo")
    for key, added in ADDED_ARGS.items():  # checkpoints from before an argument existed had its old behaviour
        ckpt[key] = {**added, **ckpt[key]}
    return ckpt


def checkpoint_name(epoch: int, step: int) -> str:
    return f"ckpt-epoch{epoch:04d}-step{step:07d}.pt"


def run_checkpoints(run_dir: str) -> list:
    """Checkpoints of one run, oldest first (names sort by epoch, then step); temporary files excluded."""
    return sorted(glob.glob(os.path.join(run_dir, "checkpoints", "ckpt-*.pt")))


def all_checkpoints(runs_dir: str) -> list:
    """Checkpoints of every run under ``runs_dir``, newest (by modification time) first."""
    paths = glob.glob(os.path.join(runs_dir, "*", "checkpoints", "ckpt-*.pt"))
    return sorted(paths, key=os.path.getmtime, reverse=True)


def newest_valid(paths: list) -> tuple:
    """(path, checkpoint) of the first loadable file in ``paths``; warns about each unreadable one skipped."""
    for path in paths:
        try:
            return path, load_checkpoint(path)
        except CheckpointError as err:
            warnings.warn(f"skipping {err}")
    return None, None


def remove_temporaries(run_dir: str) -> list:
    """Delete the temporary files that a killed save left in a run's checkpoints folder; returns their paths."""
    paths = sorted(glob.glob(os.path.join(run_dir, "checkpoints", TMP_PREFIX + "*")))
    for path in paths:
        os.remove(path)
    return paths


def prune(run_dir: str, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints of a run."""
    for path in run_checkpoints(run_dir)[:-keep]:
        os.remove(path)
