"""Random-search sweeps: ``python -m ddpm.experiments.sweep SPEC`` (``make sweep SPEC=decisions/sweeps/lr.toml``).

Each trial is an ordinary training run, ``train.py`` in a subprocess::

    train.py --runs-dir runs/<sweep> --run <trial>-s<seed> --max-steps <budget> --set KEY=VALUE ... --set SEED=<seed>
             --exploratory --tag sweep=<sweep> --tag trial=<trial>

so ``runs/<sweep>/<trial>-s<seed>/`` holds what any run holds (run.json with the overrides and tags in its
provenance, TensorBoard events, checkpoints): ``make runs``, ``make eval CKPT=...`` and TensorBoard read it as
they read any run. The sweep's own files sit beside the trials: ``sweep.json`` (the plan: spec, budget, the drawn
points), ``results.json``, ``results.md``, ``results.png`` (results.py), ``.logs/<run>.log`` (each trial's output)
and ``.hparams/`` (TensorBoard's HPARAMS tab).

Interrupted and started again, a sweep skips the runs that are finished (run.json says step == budget), resumes
those with a checkpoint, and starts again those without one. A trial that exits non-zero (a crash, a bad value,
non-finite losses) or ends with a non-finite loss is recorded as failed in ``<run>/failed.json`` with the tail of
its output, and the sweep goes on; a later start skips it too, unless ``--retry-failed`` (which keeps the failed
folder aside as ``.failed-<run>-<n>`` and trains the run afresh). ``--jobs N`` trains N runs at a time, each with
``train.py --threads`` = cores / N: the results are the same, in the same order. A folder whose runs were trained
under other values than config.py gives now (an ADR changed the default since) is refused, naming each difference.
"""

import argparse
import math
import os
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ddpm.cli import command_line, error
from ddpm.decisions.adr import fmt
from ddpm.decisions.config_file import read_config
from ddpm.decisions.provenance import architecture_drift
from ddpm.experiments import results
from ddpm.experiments.metrics import trial_metrics
from ddpm.experiments.search import draw_trials
from ddpm.experiments.spec import Spec, SpecError, load
from ddpm.files import read_json, write_json
from ddpm.measure.workload import model_size
from ddpm.run.checkpoint import RESUMABLE

REPO_ROOT = Path(__file__).resolve().parents[2]
STDERR_TAIL = 2000  # characters of a failed trial's output kept in failed.json


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


def subprocess_runner(cmd: list, log_path: str) -> tuple:
    """Run ``cmd`` with its output appended to ``log_path``; (exit code, the log's tail). Interrupting kills the child."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "a") as log:
        code = subprocess.run(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    with open(log_path, errors="replace") as log:
        return code, log.read()[-STDERR_TAIL:]


def run_status(run_dir: str, budget: int) -> str:
    """ "finished", "failed", "partial" (a folder without a finished run.json) or "new"."""
    if os.path.isfile(os.path.join(run_dir, "failed.json")):
        return "failed"
    if not os.path.isdir(run_dir):
        return "new"
    try:
        return "finished" if read_json(os.path.join(run_dir, "run.json")).get("step") == budget else "partial"
    except (OSError, ValueError):
        return "partial"


def run_points(
    spec: Spec,
    points: list,
    out_dir: str,
    *,
    budget: int,
    runner=subprocess_runner,
    retry_failed: bool = False,
    jobs: int = 1,
    report_only: bool = False,
    log=print,
) -> list:
    """Train every (point, seed) not finished yet; [{"run", "trial", "seed", "overrides", "status", ...metrics}].
    A point's own "budget" (budget_tflop specs) overrides ``budget``. ``jobs`` > 1 trains that many runs at a time,
    each with ``--threads`` = its share of the cores. ``report_only`` trains nothing: the runs not finished keep
    their status ("new" or "partial"), so that a sweep stopped early can still be reported."""
    _share_probe_cache(out_dir)
    tasks = []  # (point, seed, run, steps, status)
    for point in points:
        steps = point.get("budget", budget)
        for seed in spec.seeds:
            run = run_name(point, seed)
            run_dir = os.path.join(out_dir, run)
            status = run_status(run_dir, steps)
            if status == "failed" and retry_failed:  # kept aside as .failed-<run>-<n>, and trained afresh
                n = sum(name.startswith(f".failed-{run}-") for name in os.listdir(out_dir))
                os.rename(run_dir, os.path.join(out_dir, f".failed-{run}-{n}"))
                status = "new"
            tasks.append((point, seed, run, steps, status))
    threads = max(1, len(os.sched_getaffinity(0)) // jobs) if jobs > 1 else None
    if jobs > 1:  # print writes a line and its newline apart: two runs' lines would run into one another
        lock, log_line = threading.Lock(), log

        def log(line):
            with lock:
                log_line(line)

    def train(task) -> str:
        point, seed, run, steps, status = task
        if status in results.NOT_TRAINED:
            if report_only:
                log(f"{run}: not trained (--report)")
                return status
            return _train(spec, point, seed, run, out_dir, budget=steps, runner=runner, threads=threads, log=log)
        log(f"{run}: {status} already, skipped")
        return status

    if jobs == 1:  # no pool: after a Ctrl-C a pool's worker could start the next run before the cancel reaches it
        statuses = [train(task) for task in tasks]
    else:
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            statuses = list(pool.map(train, tasks))
        finally:  # interrupted: start no further run (the running ones got the same Ctrl-C)
            pool.shutdown(wait=True, cancel_futures=True)
    return [
        _record(spec, point, seed, run, os.path.join(out_dir, run), status)
        for (point, seed, run, _, _), status in zip(tasks, statuses)
    ]


def _train(spec, point, seed, run, out_dir, *, budget, runner, threads=None, log) -> str:
    run_dir = os.path.join(out_dir, run)
    has_checkpoint = os.path.isdir(os.path.join(run_dir, "checkpoints")) and any(
        n.endswith(".pt") for n in os.listdir(os.path.join(run_dir, "checkpoints"))
    )
    if os.path.isdir(run_dir) and not has_checkpoint:
        shutil.rmtree(run_dir)  # an interrupted start with nothing to resume from: begin it again
    cmd = train_command(
        runs_dir=out_dir,
        run=run,
        budget=budget,
        overrides=run_overrides(spec, point, seed),
        tags={"sweep": spec.name, "trial": point["trial"]},
        resume=has_checkpoint,
        threads=threads,
    )
    log(
        f"{run}: {'resuming' if has_checkpoint else 'training'} {budget} steps with "
        + " ".join(f"{k}={fmt(v)}" for k, v in point["overrides"].items())
    )
    code, tail = runner(cmd, os.path.join(out_dir, ".logs", f"{run}.log"))
    last_line = tail.strip().splitlines()[-1] if tail.strip() else ""
    reason = f"train.py exited with {code}: {last_line}" if code else None
    if reason is None:
        record = read_json(os.path.join(run_dir, "run.json"))
        loss = record.get("final_loss")
        if not isinstance(loss, (int, float)) or not math.isfinite(loss):
            reason = f"final loss {loss!r} is not finite"
        elif record.get("step") != budget:
            reason = f"stopped at step {record.get('step')} of {budget}"
    if reason is None:
        return "finished"
    os.makedirs(run_dir, exist_ok=True)
    write_json(
        {"reason": reason, "returncode": code, "command": cmd, "output_tail": tail},
        os.path.join(run_dir, "failed.json"),
    )
    log(f"{run}: FAILED ({reason}); the sweep goes on")
    return "failed"


def _record(spec, point, seed, run, run_dir, status) -> dict:
    entry = {"run": run, "trial": point["trial"], "seed": seed, "overrides": point["overrides"], "status": status}
    if status == "finished":
        entry.update(trial_metrics(run_dir, target=spec.target_accuracy))
    elif status == "failed":
        failed = read_json(os.path.join(run_dir, "failed.json"))
        entry.update(reason=failed.get("reason"), output_tail=failed.get("output_tail"))
    return entry


def _share_probe_cache(out_dir: str) -> None:
    """train.py caches the probe classifier in <runs-dir>/.probe; point the sweep's at its parent's, so that a
    sweep does not train its own probe."""
    link, target = os.path.join(out_dir, ".probe"), os.path.join(os.path.dirname(os.path.abspath(out_dir)), ".probe")
    os.makedirs(target, exist_ok=True)
    if not os.path.lexists(link):
        os.makedirs(out_dir, exist_ok=True)
        os.symlink(target, link)


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


def parser(prog: str, example: str) -> argparse.ArgumentParser:
    """The command line that ``make sweep`` and ``make ladder`` share."""
    p = argparse.ArgumentParser(
        prog=prog, description="Train every trial of a spec not trained yet, then write results.md."
    )
    p.add_argument("spec", help=f"a spec file, e.g. {example}")
    p.add_argument("--runs-dir", default=str(REPO_ROOT / "runs"), help="the results go to RUNS_DIR/<name>/")
    p.add_argument(
        "--config", default=str(REPO_ROOT / "config.py"), help="config.py (budget_fraction, sizes, the table)"
    )
    p.add_argument("--retry-failed", action="store_true", help="train the failed runs again")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs trained at a time, each on cores / JOBS threads (CPU; on one GPU they share it)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the trials and stop")
    p.add_argument(
        "--report",
        action="store_true",
        help="train nothing: write the results of the runs finished so "
        "far (a sweep stopped early); the others show as not trained",
    )
    return p


def check_epochs(spec: Spec, config: dict, points: list, budget) -> None:
    """Refuse a point whose steps exceed its EPOCHS of the shapes dataset: train.py stops at EPOCHS (the sooner of
    the two), and the run would be recorded as failed after training. Other datasets' sizes are known only then."""
    for point in points:
        cfg = {**config, **spec.base, **point["overrides"]}
        steps, epochs = point.get("budget", budget), cfg["EPOCHS"] * (cfg["DATASET_SIZE"] // cfg["BATCH_SIZE"])
        if cfg["DATASET"] == "shapes" and steps > epochs:
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


def train_spec(argv, *, ladder: bool, runner):
    """Parse the command line, train what is not trained yet: an exit code (bad spec, dry run) or
    (spec, config, out_dir, plan, runs)."""
    kind = "ladder" if ladder else "sweep"
    example = "decisions/ladders/width.toml" if ladder else "decisions/sweeps/lr.toml"
    args = parser(f"python -m ddpm.experiments.{kind}", example).parse_args(command_line(argv))
    if args.jobs < 1:
        return error(kind, f"--jobs {args.jobs}: must be ≥ 1 (runs trained at a time)")
    try:
        spec, config, points, out_dir, plan = prepare(args, ladder=ladder)
    except SpecError as err:
        return error(kind, str(err))
    if args.dry_run:
        return 0
    runs = run_points(
        spec,
        points,
        out_dir,
        budget=plan["budget"],
        runner=runner,
        retry_failed=args.retry_failed,
        jobs=args.jobs,
        report_only=args.report,
    )
    return spec, config, out_dir, plan, runs


def main(argv=None, *, runner=subprocess_runner) -> int:
    done = train_spec(argv, ladder=False, runner=runner)
    if isinstance(done, int):
        return done
    _, config, out_dir, plan, runs = done
    print(f"results → {results.write(plan, runs, out_dir, current=config)['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
