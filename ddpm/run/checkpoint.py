"""Checkpoints that describe themselves, written atomically, read without executing code.

A checkpoint is one ``torch.save`` dict of tensors and plain Python values: weights, EMA weights, optimizer
state, counters, RNG states, each component's constructor arguments and the config snapshot, so that
``sample.py`` rebuilds everything from the file alone. It is written to a temporary file in the target's own
folder, fsynced and renamed over the target, so a crash mid-write leaves the previous checkpoint intact
(a rename within one file system is atomic; staging in /tmp would not be). It is read with
``weights_only=True``, which refuses pickled code.

Every failure is one ``CheckpointError`` whose message names the file, what happened and what to do: an
unreadable file (truncated, empty, random bytes) is told apart from one refused for safety (it asks to run
code), and a failed save (disk full, read-only folder, failed rename) says that the previous checkpoints are
untouched. ``remove_temporaries`` deletes what a save killed mid-write left behind.
"""

import contextlib
import glob
import os
import re
import tempfile
import warnings

import torch

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "unet_args", "text_args", "diffusion_args", "sampling", "ema_unet", "config", "step")
TMP_PREFIX = ".tmp-"


# What torch's weights-only unpickler says when a file asks for more than tensors and containers: a global
# (function or class) outside its allowlist, or a call or construction with one. Other unpickling errors
# ("Unsupported operand", a short read) mean a damaged file.
_REFUSED = re.compile(r"GLOBAL ([\w.]+)|unrecognized function|Can only (?:create new object|build)")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used; the message names the file and the way out."""


class CheckpointSaveError(CheckpointError):
    """A checkpoint that could not be written; the previous ones are untouched and no temporary file is left."""


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
    """Write ``obj`` to ``path`` through a temporary file in the same folder; raises ``CheckpointSaveError``."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=".pt")
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            with contextlib.suppress(OSError):  # else remove_temporaries() deletes it at the next start
                os.remove(tmp)
        if not isinstance(err, Exception):  # an interrupt stays an interrupt
            raise
        raise CheckpointSaveError(f"could not save checkpoint {path}: {_what_happened(err)}; the previous "
                                  f"checkpoints in {folder} are untouched") from None
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


# Constructor arguments added after checkpoints were first written, with the behaviour those checkpoints had.
ADDED_ARGS = {"diffusion_args": {"prediction": "epsilon"},  # ADR 0028
              "unet_args": {"linear_bias": True, "norm": "group", "pooled_text": False,  # ADRs 0029, 0030, 0032
                            "scale_shift": False},  # ADR 0034
              "text_args": {"train_tower": False}}  # ADR 0031


def with_added_args(ckpt: dict) -> dict:
    """``ckpt`` with each ``ADDED_ARGS`` entry its constructor arguments lack filled in: a checkpoint or export
    written before an argument existed had its old behaviour, and compares equal to a run that asks for it."""
    for key, added in ADDED_ARGS.items():
        ckpt[key] = {**added, **ckpt[key]}
    return ckpt


def load_checkpoint(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file; check the path, or use another one")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, zero bytes, random bytes, or a pickle with code in it
        refused = _REFUSED.search(str(err))
        if refused:  # never pass on torch's advice to retry with weights_only=False
            asks = f" (it asks for {refused.group(1)})" if refused.group(1) else ""
            raise CheckpointError(f"{path}: holds objects that are not plain tensors{asks} and was refused for "
                                  "safety; do not load it, use another checkpoint") from None
        detail = (str(err).strip().splitlines() or [""])[0].split(". ")[0][:120]
        detail = "" if detail.startswith("Weights only load failed") else detail  # torch's preamble, not the cause
        raise CheckpointError(f"{path}: not a readable checkpoint, truncated or corrupt ({type(err).__name__}"
                              f"{': ' + detail if detail else ''}); use another one") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint of this repo (missing {', '.join(missing)}); use another one")
    if ckpt["format"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {ckpt['format']} is newer than this code ({FORMAT_VERSION}); update the repo")
    return with_added_args(ckpt)


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
    """Delete the temporary files that saves killed mid-write left in a run's checkpoints folder; returns their
    paths. Call it at the start of training, when no save of this run is under way. A file that cannot be
    deleted (a read-only folder) stays; the next save into that folder then says why it fails."""
    removed = []
    for path in sorted(glob.glob(os.path.join(run_dir, "checkpoints", glob.escape(TMP_PREFIX) + "*"))):
        try:
            os.remove(path)
        except OSError:
            continue
        removed.append(path)
    return removed


def prune(run_dir: str, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints of a run."""
    for path in run_checkpoints(run_dir)[:-keep]:
        os.remove(path)
