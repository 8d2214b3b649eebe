"""A sweep's or a ladder's plan: the points a spec draws, each point's budget in steps, the runs' names and the
train.py command line of each, and the checks that a runs folder holds the same plan and the same config.py
values before anything trains. ``prepare`` reads a spec into all of that.
"""

import os
import sys
from pathlib import Path

from ddpm.decisions.adr import fmt
from ddpm.decisions.config_file import read_config
from ddpm.decisions.provenance import architecture_drift
from ddpm.experiments import results
from ddpm.experiments.search import draw_trials
from ddpm.experiments.spec import Spec, SpecError, load
from ddpm.files import read_json, write_json
from ddpm.measure.workload import model_size
from ddpm.run.checkpoint import RESUMABLE

REPO_ROOT = Path(__file__).resolve().parents[2]


def budget_steps(spec: Spec, config: dict, overrides: dict = None) -> int:
    """Optimizer steps of a trial: the spec's budget_steps; its budget_fraction of the default run (EPOCHS × steps
    per epoch of ``[base]``); or, for budget_tflop, the steps at which the point's training compute
    3 × forward FLOPs per image × BATCH_SIZE × steps reaches it, with the point's ``overrides``: a wider rung or a
    larger batch trains fewer steps, so that a ladder or a batch-size sweep compares at equal compute."""
    if spec.budget_steps is not None:
        return spec.budget_steps
    if spec.budget_tflop is not None:
        cfg = {**config, **spec.base, **(overrides or {})}
        per_step = 3 * model_size(cfg)["fwd_flops_per_image"] * cfg["BATCH_SIZE"]
        return max(1, round(spec.budget_tflop * 1e12 / per_step))
    cfg = {**config, **spec.base}
    return max(1, round(spec.budget_fraction * cfg["EPOCHS"] * (cfg["DATASET_SIZE"] // cfg["BATCH_SIZE"])))


def budget_text(spec: Spec, budget) -> str:
    """The budget in words, for results.md and the ADR drafted from it."""
    if spec.budget_tflop is None:
        return f"{budget} optimizer steps each"
    return (
        f"{fmt(spec.budget_tflop)} TFLOP of training compute each (3 × forward FLOPs × images; the steps differ "
        f"by point)"
    )


def sweep_points(spec: Spec) -> list:
    """[{"trial": "t00", "overrides": {NAME: value}}] drawn from the sweep's seed."""
    width = len(str(spec.trials - 1))
    return [
        {"trial": f"t{i:0{width}d}", "overrides": o}
        for i, o in enumerate(draw_trials(spec.vary, spec.trials, spec.seed))
    ]


def run_name(point: dict, seed: int) -> str:
    """The folder of one (point, seed) in the sweep's: ``<trial>-s<seed>``."""
    return f"{point['trial']}-s{seed}"


def run_overrides(spec: Spec, point: dict, seed: int) -> dict:
    """What a run's ``--set``s put over config.py: the spec's ``[base]``, the point's values, the seed."""
    return {**spec.base, **point["overrides"], "SEED": seed}


def train_command(
    *, runs_dir: str, run: str, budget: int, overrides: dict, tags: dict, resume: bool, threads: int = None
) -> list:
    """The train.py command line of one run (``--resume`` continues its newest checkpoint)."""
    cmd = [
        sys.executable,
        str(REPO_ROOT / "train.py"),
        "--runs-dir",
        runs_dir,
        "--max-steps",
        str(budget),
        "--exploratory",
    ]
    cmd += ["--threads", str(threads)] if threads else []
    cmd += ["--resume", run] if resume else ["--run", run]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={fmt(value)}"]
    for key, value in tags.items():
        cmd += ["--tag", f"{key}={value}"]
    return cmd


SAME_RUNS = ("budget", "points", "base")  # what makes run <trial>-s<seed> the same run in two plans


def check_plan(out_dir: str, plan: dict) -> None:
    """Write sweep.json, or refuse (one line) when the folder holds a sweep whose runs would differ.

    The number of seeds may change: run <trial>-s<k> is the same whatever the count, so raising ``seeds`` trains
    only the new seeds, and the table then covers the spec's seeds.
    """
    path = os.path.join(out_dir, "sweep.json")
    if os.path.isfile(path):
        old = read_json(path)
        if {k: old.get(k) for k in SAME_RUNS} != {k: plan[k] for k in SAME_RUNS}:
            raise SpecError(
                f"{out_dir} holds a sweep with other trials, fixed values or budget (its sweep.json); "
                f"give the spec another name, or move that folder away"
            )
    os.makedirs(out_dir, exist_ok=True)
    write_json(plan, path)


def check_config(out_dir: str, spec: Spec, config: dict, points: list) -> None:
    """Refuse (one line per run) when a run already in the folder was trained under other values than config.py,
    ``[base]`` and its point would give it now, outside what a resume may change (``RESUMABLE``): a sweep would
    skip it as finished, or resume it with its own values, and report a mix of two defaults as one (for example
    after an ADR changes config.py). A constant absent on either side is not compared: an ADR adds a constant at
    the value that keeps today's behaviour."""
    stale = []
    for point in points:
        for seed in spec.seeds:
            run = run_name(point, seed)
            try:
                saved = read_json(os.path.join(out_dir, run, "run.json"))["config"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not started, or no run.json yet: nothing trained to mix in
            now = {**config, **run_overrides(spec, point, seed)}
            keys = sorted((set(saved) & set(now)) - set(RESUMABLE))
            stale += [
                f"{run}: {key} = {fmt(was)} there, {fmt(is_)} now"
                for key, (was, is_) in architecture_drift(saved, now, keys).items()
            ]
    if stale:
        raise SpecError(
            f"{out_dir} holds runs trained under other values than config.py and the spec give now "
            f"(config.py changed since?):\n  " + "\n  ".join(stale) + "\ngive the spec another name (or "
            "move the folder away) to train today's values; the old runs' git commit is in their run.json"
        )


def check_epochs(spec: Spec, config: dict, points: list, budget) -> None:
    """Refuse a point whose steps exceed its EPOCHS of the shapes dataset: train.py stops at EPOCHS (the sooner of
    the two), and the run would be recorded as failed after training. Other datasets' sizes are known only then."""
    for point in points:
        cfg = {**config, **spec.base, **point["overrides"]}
        steps, epochs = point.get("budget", budget), cfg["EPOCHS"] * (cfg["DATASET_SIZE"] // cfg["BATCH_SIZE"])
        if cfg["DATASET"] == "shapes" and not cfg.get("TRAIN_STEPS") and steps > epochs:
            raise SpecError(
                f"{spec.path}: {point['trial']} would train {steps:,} steps, but EPOCHS = {cfg['EPOCHS']} "
                f"ends it at {epochs:,}; raise EPOCHS in [base] (train.py stops at the sooner)"
            )


def prepare(args, *, ladder: bool = False) -> tuple:
    """(spec, config, points, out_dir, plan) for a sweep or a ladder; SpecError for a bad spec or a changed plan."""
    spec = load(args.spec, ladder=ladder)
    config = read_config(args.config)
    points = (
        [{"trial": f"r{i}", "overrides": rung} for i, rung in enumerate(spec.rungs)] if ladder else sweep_points(spec)
    )
    budget = None if spec.budget_tflop is not None else budget_steps(spec, config)
    if budget is None:  # compute-matched: the steps are the point's own
        for point in points:
            point["budget"] = budget_steps(spec, config, point["overrides"])
    check_epochs(spec, config, points, budget)
    kind = "ladder" if ladder else "sweep"
    plan = results.jsonable(
        {
            "kind": kind,
            "name": spec.name,
            "spec": args.spec,
            "seed": spec.seed,
            "seeds": spec.seeds,
            "budget": budget,
            "budget_tflop": spec.budget_tflop,
            "budget_text": budget_text(spec, budget),
            "metric": spec.metric,
            "direction": spec.direction,
            "target_accuracy": spec.target_accuracy,
            "base": spec.base,
            "points": points,
            "axes": {d.name: d.axis for d in spec.vary},
            "command": f"make {kind} SPEC={args.spec}",
        }
    )
    for point in points:
        print(
            f"{point['trial']}: "
            + " ".join(f"{k}={fmt(v)}" for k, v in point["overrides"].items())
            + (f" ({point['budget']} steps)" if "budget" in point else "")
        )
    out_dir = os.path.join(args.runs_dir, spec.name)
    if not args.dry_run:
        check_plan(out_dir, plan)
        check_config(out_dir, spec, config, points)
    return spec, config, points, out_dir, plan
