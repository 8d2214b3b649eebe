"""A run's folder, runs/<name>/: where its checkpoints are and how they are named, listed and pruned, and what
train.py writes beside them. What a checkpoint holds is ddpm/run/checkpoint.py.

    run.json            the config, provenance (with one entry per resume), counters, final loss, the quality curve
                        and the evaluation's headline numbers; read-modify-written, so nothing recorded is lost
    events.out.*        TensorBoard: train/*, loss_by_t/*, eval/*, samples, the provenance text and hparams
    samples/            the sample grids (epochNNNN-stepNNNNNNN.png) and their prompts.txt
    checkpoints/        ckpt-epochNNNN-stepNNNNNNN.pt, the newest KEEP_CHECKPOINTS of them; .tmp-* while one is written

Errors a user can fix (no such run, an unwritable folder) are ``RunFolderError`` with a one-line message.
"""

import datetime
import glob
import math
import os
import warnings

import torchvision.utils as vutils
from torch.utils.tensorboard import SummaryWriter

from ddpm.files import TMP_PREFIX, read_json, write_json
from ddpm.run.checkpoint import CheckpointError, load_checkpoint


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked; the message names it and the way out."""


# ---- the checkpoints of a run ------------------------------------------------------------------------------
def checkpoint_name(epoch: int, step: int) -> str:
    return f"ckpt-epoch{epoch:04d}-step{step:07d}.pt"


def run_checkpoints(run_dir: str) -> list:
    """Checkpoints of one run, oldest first (names sort by epoch, then step); temporary files excluded."""
    return sorted(glob.glob(os.path.join(glob.escape(run_dir), "checkpoints", "ckpt-*.pt")))


def all_checkpoints(runs_dir: str) -> list:
    """Checkpoints of every run under ``runs_dir``, newest (by modification time) first."""
    paths = glob.glob(os.path.join(glob.escape(runs_dir), "*", "checkpoints", "ckpt-*.pt"))
    return sorted(paths, key=os.path.getmtime, reverse=True)


def newest_valid(paths: list) -> tuple:
    """(path, checkpoint) of the first loadable file in ``paths``; warns about each unreadable one skipped."""
    for path in paths:
        try:
            return path, load_checkpoint(path)
        except CheckpointError as err:
            warnings.warn(f"skipping {err}")
    return None, None


def checkpoint_at(path: str, load=load_checkpoint) -> tuple:
    """(file, checkpoint) for what a user passed as CKPT: a file, read by ``load``, or a run folder, whose newest
    checkpoint that loads is taken (``make sample``, ``make eval``, ``make export`` and the pipeline alike);
    CheckpointError naming the folder when it holds none."""
    if not os.path.isdir(path):
        return path, load(path)
    found, ckpt = newest_valid(list(reversed(run_checkpoints(path))))
    if ckpt is None:
        raise CheckpointError(
            f"{path}: no checkpoint that loads in {os.path.join(path, 'checkpoints')}; "
            "pass a run folder that has trained, a .pt or a .safetensors file"
        )
    return found, ckpt


def remove_temporaries(run_dir: str) -> list:
    """Delete the temporary files that saves killed mid-write left in a run's checkpoints folder; returns their
    paths. Call it at the start of training, when no save of this run is under way. A file that cannot be
    deleted (a read-only folder) stays; the next save into that folder then says why it fails."""
    removed = []
    for path in sorted(glob.glob(os.path.join(glob.escape(run_dir), "checkpoints", glob.escape(TMP_PREFIX) + "*"))):
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


# ---- names, resume, the record ------------------------------------------------------------------------------
def check_run_name(name: str, flag: str = "--run") -> str:
    """``name`` when it is one folder name under the runs folder; RunFolderError otherwise. A run's files must stay
    in the runs folder the user named: no separator, no "." or "..", no absolute path, and no leading "." (the
    runs folder's own .data-cache, .probe and .logs)."""
    if not name or name.startswith(".") or os.sep in name or "/" in name or "\0" in name or os.path.isabs(name):
        raise RunFolderError(
            f"{flag} {name!r}: a run name is one folder name under the runs folder (no '/', not "
            "'.' or '..', not starting with '.'), e.g. --run lr-2e-3; pass --runs-dir for another "
            "place"
        )
    return name


def restartable(run_dir: str) -> str:
    """``run_dir`` for a new run: a name not used yet, or a folder whose first start stopped before its first
    checkpoint (nothing to resume: the same command starts it afresh, and the old start's events are dropped when
    the folder is opened). A folder with checkpoints raises RunFolderError."""
    if run_checkpoints(run_dir):
        raise RunFolderError(
            f"run {run_dir} exists already: pick another --run name, or continue it with "
            f"--resume {os.path.basename(run_dir)}"
        )
    return run_dir


def find_resume(runs_dir: str, name: str) -> tuple:
    """(run folder, checkpoint path, checkpoint) to resume: ``name`` under ``runs_dir``, or the newest run for
    "latest". A killed save's temporary files are removed first (and their paths printed)."""
    run_dir = newest_run(runs_dir) if name == "latest" else os.path.join(runs_dir, check_run_name(name, "--resume"))
    if run_dir is None or not os.path.isdir(run_dir):
        raise RunFolderError(f"--resume {name}: no such run under {runs_dir}; start a new run with make train")
    for path in remove_temporaries(run_dir):
        print(f"removed {path}, left by a save that was interrupted")
    paths = run_checkpoints(run_dir)
    path, ckpt = newest_valid(list(reversed(paths)))
    if ckpt is None and not paths:
        raise RunFolderError(
            f"--resume: {run_dir} has no checkpoint (it stopped before its first); start it again "
            f"with the command that started it: the same --run {os.path.basename(run_dir)} starts "
            "afresh (its overrides are in its run.json)"
        )
    if ckpt is None:
        raise RunFolderError(
            f"--resume: no checkpoint in {run_dir} loads ({len(paths)} unreadable); move the folder "
            "away, or start a new run with another --run name"
        )
    return run_dir, path, ckpt


def newest_run(runs_dir: str):
    """The folder of the run with the newest checkpoint under ``runs_dir``, or None."""
    paths = all_checkpoints(runs_dir)
    return os.path.dirname(os.path.dirname(paths[0])) if paths else None


def last_good(run_dir: str) -> str:
    """A sentence naming the run's newest checkpoint, for messages after a fault."""
    paths = run_checkpoints(run_dir)
    return f"The last good checkpoint, {paths[-1]}, is intact." if paths else "No checkpoint was written yet."


def open_run_folder(run_dir: str, record: dict, *, purge_step=None) -> SummaryWriter:
    """Create the run's folders, write ``record`` as run.json, and open TensorBoard.

    ``purge_step``: on resume, the step after the checkpoint's. TensorBoard then drops the events that the
    interrupted process logged after its checkpoint (they are logged again) and keeps those at the checkpoint's
    own step, which were logged before it was saved.
    """
    try:
        os.makedirs(os.path.join(run_dir, "samples"), exist_ok=True)
        if purge_step is None:  # a new run: events of an earlier start that wrote no checkpoint are not this run's
            for old in glob.glob(os.path.join(glob.escape(run_dir), "events.out.tfevents.*")):
                os.remove(old)
        write_json(record, os.path.join(run_dir, "run.json"), allow_nan=True)
        return SummaryWriter(run_dir, purge_step=purge_step)
    except OSError as err:
        raise RunFolderError(
            f"cannot write the run folder {run_dir}: {err.strerror or err}; pass a writable "
            f'--runs-dir (make train ARGS="--runs-dir /path") or fix its permissions'
        ) from err


def update_record(run_dir: str, **fields) -> None:
    """Read-modify-write run.json, keeping everything else it holds (the curve, the eval, the provenance)."""
    path = os.path.join(run_dir, "run.json")
    write_json({**read_json(path), **fields}, path, allow_nan=True)


def record_resume(prov: dict, *, step: int, changes: dict, commit, dirty) -> dict:
    """The run's provenance with this resume appended: when, at which step, under which commit, what changed."""
    entry = {
        "at_step": step,
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "git_commit": commit,
        "git_dirty": dirty,
        "changes": {k: [old, new] for k, (old, new) in changes.items()},
    }
    return {**prov, "resumes": [*prov.get("resumes", []), entry]}


def save_grid(images, prompts: list, writer: SummaryWriter, run_dir: str, *, epoch: int, step: int) -> str:
    """Images (N, 3, H, W) in [-1, 1] as samples/epochNNNN-stepNNNNNNN.png, their prompts, and in TensorBoard."""
    grid = vutils.make_grid(images * 0.5 + 0.5, nrow=int(math.ceil(math.sqrt(len(prompts)))), padding=2)
    path = os.path.join(run_dir, "samples", f"epoch{epoch:04d}-step{step:07d}.png")
    vutils.save_image(grid, path)
    with open(os.path.join(run_dir, "samples", "prompts.txt"), "w") as f:
        f.write("\n".join(prompts) + "\n")
    writer.add_image("samples", grid, step)
    return path


def log_provenance(writer: SummaryWriter, cfg: dict, prov: dict) -> None:
    """The run's provenance and config as TensorBoard text and hparams, at step 0. A sweep's trial leaves the
    hparams to its sweep, which writes them with the trial's scores (ddpm/experiments/results.py): one row each in
    TensorBoard's HPARAMS tab, not two."""
    adr = prov.get("adr") or {}
    text = "\n".join(f"    {k} = {v!r}" for k, v in cfg.items())
    writer.add_text(
        "provenance",
        f"ADR {adr.get('number')}: {adr.get('title')}  \ncommit {prov.get('git_commit')} "
        f"(dirty: {prov.get('git_dirty')})  \noverrides: {prov.get('overrides')}  \n"
        f"exploratory: {prov.get('exploratory')}\n\n{text}",
        0,
    )
    if "sweep" in (prov.get("tags") or {}):
        return
    hparams = {k: (v if isinstance(v, (int, float, str, bool)) else repr(v)) for k, v in cfg.items()}
    writer.add_hparams(hparams, {"hparam/final_loss": float("nan")}, run_name=".")
