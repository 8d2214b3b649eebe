"""Train the text-conditional DDPM: `make train` (or `python train.py [--set KEY=VALUE ...] [--resume]`).

The command line, the decisions gate, and the loop. ``main`` reads as config → build → resume → loop → close:
``configure`` reads config.py once, applies ``--set`` and refuses a config.py that the accepted ADRs do not
cover; ``ddpm.training.build`` builds the run (data, text encoder, UNet, diffusion, optimizer, EMA, a resumed
checkpoint or a fine-tuning base, the run folder); the loop below takes one optimizer step at a time
(``ddpm.training.step``) and calls the monitoring when it is due (``ddpm.training.monitor``: the logging window,
sample grids, probe points, checkpoints). A run lives in runs/<name>/: TensorBoard events, samples/,
checkpoints/, run.json. Under `torchrun --nproc-per-node N train.py` (`make train NPROC=N`) the same loop runs
data-parallel (ddpm/distributed, ADR 0017): BATCH_SIZE stays the global batch, each rank trains on its slice,
rank 0 alone writes files.
"""

import argparse
import datetime
import os
import time

import torch

from ddpm.cli import command_line, fail
from ddpm.decisions import provenance
from ddpm.decisions.config_file import ConfigError, read_config
from ddpm.decisions.replay import replay
from ddpm.distributed import ddp
from ddpm.files import read_json
from ddpm.run import settings
from ddpm.run.checkpoint import RESUMABLE, resumed_config
from ddpm.run.folder import RunFolderError, check_run_name, find_resume, restartable, update_record
from ddpm.training.build import RunError, build, open_folder
from ddpm.training.monitor import Monitor, RunStopped, probe_for
from ddpm.training.step import draw, end_of_epoch, learning_rate, optimizer_step

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value for this run"
    )
    p.add_argument(
        "--run",
        "--run-name",
        dest="run",
        default=None,
        help="run name (default: the date and time); under torchrun, spell it --run-name",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        metavar="RUN",
        help="continue a run from its newest valid checkpoint (default: the newest run); it keeps its own "
        "config, and --set may change only what a resume may (EPOCHS, monitoring, previews, speed)",
    )
    p.add_argument("--runs-dir", default=os.path.join(HERE, "runs"))
    p.add_argument("--config", default=os.path.join(HERE, "config.py"), help="the constants (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps (smoke tests)")
    p.add_argument(
        "--exploratory",
        action="store_true",
        help="train even though config.py differs from the accepted decisions; the run is marked exploratory",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--init-from",
        metavar="PATH",
        help="start a new run (step 0, fresh optimizer) from the EMA weights "
        "of a checkpoint or an exported .safetensors model; the architecture must match",
    )
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label recorded in run.json's provenance (a sweep stamps its name and trial this way)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help='CPU threads of this process (default: torch\'s, one per core); make sweep ARGS="--jobs N" '
        "gives each of its N runs at a time an equal share of the cores",
    )
    args = p.parse_args(command_line(argv))
    if args.max_steps is not None and args.max_steps < 1:
        bad_input(f"--max-steps {args.max_steps}: must be ≥ 1 (or left out to train EPOCHS epochs)")
    if args.threads is not None and args.threads < 1:
        bad_input(f"--threads {args.threads}: must be ≥ 1 (or left out for one per core)")
    return args


def bad_input(message):
    """Stop with one line and exit code 2: the input was wrong, nothing was written."""
    fail("train.py", message)


def validated(cfg: dict, overrides: dict) -> dict:
    """``settings.validate``, with each key's origin (its ADR, or --set) named in the error."""
    try:
        origin = {k: f"set by ADR {n:04d}" for k, n in replay(os.path.join(HERE, "decisions"))[1].items()}
    except Exception:  # noqa: BLE001 - a broken ADR must not hide the config error itself
        origin = {}
    origin.update({k: "from --set" for k in overrides})
    try:
        return settings.validate(cfg, origin=origin)
    except ValueError as err:
        bad_input(str(err))


def check_decisions(config_file_values: dict, overrides: dict, exploratory: bool, config_path: str) -> dict:
    """Provenance of this run; refuses a config.py that the accepted decisions do not cover."""
    prov = provenance.collect(
        config_file_values,
        overrides,
        repo_root=HERE,
        decisions_dir=os.path.join(HERE, "decisions"),
        config_path=config_path,
    )
    if prov["decision_errors"] and not exploratory:
        bad_input(
            "config.py does not match the accepted decisions:\n  "
            + "\n  ".join(prov["decision_errors"])
            + '\nWrite an ADR (make adr TITLE="..."), or run anyway with: make train ARGS=--exploratory'
        )
    prov["exploratory"] = bool(prov["decision_errors"] or overrides or exploratory)
    return prov


def parse_tags(items: list) -> dict:
    tags = dict(item.partition("=")[::2] for item in items)
    if any(not key for key in tags) or any("=" not in item for item in items):
        bad_input(f"--tag {items}: expected KEY=VALUE, e.g. --tag sweep=lr")
    return tags


def configure(args) -> tuple:
    """(config, provenance, run folder, resume) where resume is None or (checkpoint path, checkpoint, changes).

    A new run takes config.py with the --set overrides, checked against the accepted decisions. A resumed run
    keeps its own config; --set may change only ``RESUMABLE`` keys there, and is refused for the rest.
    """
    try:
        config_file_values = read_config(args.config)  # an ast reader: literals only, nothing executed
        overrides = settings.parse_overrides(args.set)
        if args.resume is None:
            name = args.run if args.run is not None else datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            run_dir = restartable(os.path.join(args.runs_dir, check_run_name(name)))  # no folder with checkpoints
            cfg = validated({**config_file_values, **overrides}, overrides)
            prov = check_decisions(config_file_values, overrides, args.exploratory, args.config)
            return cfg, {**prov, "tags": parse_tags(args.tag)} if args.tag else prov, run_dir, None
        run_dir, ckpt_path, ckpt = find_resume(args.runs_dir, args.resume)
    except (ValueError, RunFolderError, ConfigError) as err:
        bad_input(str(err))
    cfg, changes, refused, ignored = resumed_config(ckpt["config"], config_file_values, overrides)
    if refused:
        bad_input(
            f"cannot resume {run_dir} with a different "
            + ", ".join(refused)
            + ":\n  "
            + "\n  ".join(f"{k}: run {old!r}, --set {new!r}" for k, (old, new) in refused.items())
            + '\nThese make the run what it is; start a new run for them (make train ARGS="--set ..."). '
            "A resume may change: " + ", ".join(RESUMABLE)
        )
    if ignored:
        print(
            f"note: config.py now differs from this run in {', '.join(ignored)}; the resumed run keeps its own values"
        )
    return validated(cfg, changes), ckpt["provenance"], run_dir, (ckpt_path, ckpt, changes)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # before any work: it also sets OpenMP's, which compiled kernels use
    cfg, prov, run_dir, resume = configure(args)  # config.py once, --set, the decisions gate (a resume: its own)
    try:
        run = build(
            cfg,
            prov,
            run_dir,
            runs_dir=args.runs_dir,
            device=args.device,
            max_steps=args.max_steps,
            resume=resume,
            init_path=args.init_from,
        )  # data, text encoder, UNet, diffusion, optimizer, EMA
        if run.finished:  # a resume of a run that has trained all its steps
            return finished(run, resume)
        prompts = open_folder(run, resumed=resume is not None, grid_size=cfg["SAMPLE_GRID_SIZE"])
    except RunError as err:
        bad_input(str(err))
    monitor = Monitor(run, prompts=prompts, probe=probe_for(run, args.runs_dir))
    try:
        while not run.finished:
            lr = learning_rate(run)  # warm-up, then the schedule
            started = time.perf_counter()
            result = optimizer_step(run, draw(run))  # draws, loss, backward, clip, non-finite guard, update, EMA
            monitor.count(result)  # the logging window; MAX_BAD_STEPS non-finite steps in a row end the run
            epoch_ended = end_of_epoch(run)
            save_now = monitor.checkpoint_due(epoch_ended)
            if monitor.log_due(save_now):
                monitor.log(lr)  # TensorBoard scalars and progress
            if monitor.grid_due(epoch_ended):
                monitor.sample_grid()
            monitor.add_time(started)  # the curve's clock: training and grids, not the probe
            if monitor.probe_due(epoch_ended, result.stepped):
                monitor.probe_point()
            if save_now:
                monitor.checkpoint()
    except RunStopped as err:
        fail("train.py", str(err), code=1)
    monitor.close()
    ddp.teardown(run.world, run.heartbeat)
    monitor.say(monitor.summary())
    return run.run_dir


def finished(run, resume) -> str:
    """A resumed run with nothing left to train: say so, and bring run.json up to its checkpoint (a kill between
    the last checkpoint's rename and run.json's update leaves run.json a checkpoint behind)."""
    _, ckpt, _ = resume
    record_path = os.path.join(run.run_dir, "run.json")
    if run.world.main and read_json(record_path).get("step") != run.state.step:
        update_record(run.run_dir, step=run.state.step, epoch=run.state.epoch, final_loss=ckpt.get("loss"))
        print(f"run.json of {run.run_dir} brought up to its last checkpoint (step {run.state.step})")
    print(
        f"run {run.run_dir} is finished: {run.state.step} of {run.total} steps done; nothing to do. To train on, "
        f'resume with more epochs: make train ARGS="--resume {os.path.basename(run.run_dir)} --set EPOCHS=..."'
    )
    ddp.teardown(run.world, run.heartbeat)
    return run.run_dir


if __name__ == "__main__":
    main()
