"""Random-search sweeps: ``python -m ddpm.experiments.sweep SPEC`` (``make sweep SPEC=decisions/sweeps/lr.toml``).

Each trial is an ordinary training run, ``train.py`` in a subprocess::

    train.py --runs-dir runs/<sweep> --run <trial>-s<seed> --max-steps <budget> --set KEY=VALUE ... --set SEED=<seed>
             --exploratory --tag sweep=<sweep> --tag trial=<trial>

so ``runs/<sweep>/<trial>-s<seed>/`` holds what any run holds (run.json with the overrides and tags in its
provenance, TensorBoard events, checkpoints): ``make runs``, ``make eval CKPT=...`` and TensorBoard read it as
they read any run. The sweep's own files sit beside the trials: ``sweep.json`` (the plan: spec, budget, the drawn
points), ``study.db`` (the Optuna study that schedules and records them, ``ddpm.experiments.study``),
``results.json``, ``results.md``, ``results.png`` (results.py), ``.logs/<run>.log`` (each trial's output) and
``.hparams/`` (TensorBoard's HPARAMS tab).

Who trains what: every (point, seed) is a trial of the study, claimed by one worker at a time. ``--jobs N`` runs N
workers in this process (threads), ``--workers N`` starts N worker processes; each run gets ``train.py --threads``
= cores / N. The same command on other machines, with one ``--storage`` (a database URL, or ``journal:`` and a
file on a shared filesystem) and a shared runs folder, joins the same study: each run is trained once, a worker
that dies leaves its run to another, which resumes it from its newest checkpoint, and a finished study trains
nothing. The results do not depend on who trained what.

Interrupted and started again, a sweep skips the runs that are finished (run.json says step == budget), resumes
those with a checkpoint, and starts again those without one. A trial that exits non-zero (a crash, a bad value,
non-finite losses) or ends with a non-finite loss is recorded as failed in ``<run>/failed.json`` with the tail of
its output, and the sweep goes on; a later start skips it too, unless ``--retry-failed`` (which keeps the failed
folder aside as ``.failed-<run>-<n>`` and trains the run afresh). A folder whose runs were trained under other
values than config.py gives now (an ADR changed the default since) is refused, naming each difference.
"""

import argparse
import os
import sys

import optuna

from ddpm.cli import command_line, error
from ddpm.experiments import results
from ddpm.experiments import study as studies
from ddpm.experiments.metrics import trial_metrics
from ddpm.experiments.plan import REPO_ROOT, prepare, run_name
from ddpm.experiments.spec import SpecError
from ddpm.experiments.workers import Workers, run_status, spawn_workers, subprocess_runner
from ddpm.files import read_json


def run_points(
    spec,
    points: list,
    out_dir: str,
    *,
    budget: int,
    runner=subprocess_runner,
    retry_failed: bool = False,
    jobs: int = 1,
    report_only: bool = False,
    storage: str = None,
    threads: int = None,
    plan: dict = None,
    log=print,
) -> list:
    """Train every (point, seed) not finished yet, claiming each from the sweep's study; returns
    [{"run", "trial", "seed", "overrides", "status", ...metrics}] in plan order. A point's own "budget"
    (budget_tflop specs) overrides ``budget``. ``jobs`` workers in this process (threads), each run on ``threads``
    threads (default: cores / jobs). ``report_only`` trains nothing: the runs not finished keep their status ("new"
    or "partial"), so that a sweep stopped early can still be reported."""
    _share_probe_cache(out_dir)
    units = [studies.Unit(p, seed, run_name(p, seed), p.get("budget", budget)) for p in points for seed in spec.seeds]
    retried = []
    if retry_failed:
        for unit in units:
            run_dir = os.path.join(out_dir, unit.run)
            if run_status(run_dir, unit.steps) == "failed":  # kept aside as .failed-<run>-<n>, trained afresh
                n = sum(name.startswith(f".failed-{unit.run}-") for name in os.listdir(out_dir))
                os.rename(run_dir, os.path.join(out_dir, f".failed-{unit.run}-{n}"))
                retried.append(unit.run)
    if not report_only:
        url = storage or f"sqlite:///{os.path.abspath(os.path.join(out_dir, 'study.db'))}"
        study = studies.open_study(url, spec.name, plan or {}, units, log=log)
        if retried:
            _requeue(study, retried)
        threads = threads or (max(1, len(os.sched_getaffinity(0)) // jobs) if jobs > 1 else None)
        Workers(spec, study, units, out_dir, runner=runner, threads=threads, log=log).run(jobs)
    records = []
    for unit in units:
        status = run_status(os.path.join(out_dir, unit.run), unit.steps)
        if report_only and status in results.NOT_TRAINED:
            log(f"{unit.run}: not trained (--report)")
        records.append(_record(spec, unit.point, unit.seed, unit.run, os.path.join(out_dir, unit.run), status))
    return records


def _requeue(study, runs: list) -> None:
    """--retry-failed: the failed trial of each of ``runs`` once more (their folders were moved aside)."""
    done = set(study.user_attrs.get("requeued", []))
    failed = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
        if t.user_attrs.get("run") in runs and t.number not in done
    ]
    for frozen in failed:
        study.enqueue_trial(frozen.system_attrs.get("fixed_params", frozen.params), user_attrs=frozen.user_attrs)
    study.set_user_attr("requeued", sorted(done | {t.number for t in failed}))


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
        help="workers in this process: runs trained at a time, each on cores / JOBS threads (CPU; on one GPU they "
        "share it)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="worker processes to start here (make sweep WORKERS=N), each one run at a time on cores / N threads",
    )
    p.add_argument(
        "--storage",
        help="where the study lives (default: sqlite in runs/<sweep>/study.db); for several machines a database URL "
        "(postgresql://…, mysql+pymysql://…) or journal:/shared/path/study.log, with the runs folder shared too",
    )
    p.add_argument("--threads", type=int, help="threads of each training run (default: cores / workers)")
    p.add_argument(
        "--grace",
        type=float,
        default=studies.GRACE_SECONDS,
        help="seconds a worker may go without a heartbeat before its run is handed to another (default: %(default)s)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the trials and stop")
    p.add_argument(
        "--report",
        action="store_true",
        help="train nothing: write the results of the runs finished so "
        "far (a sweep stopped early); the others show as not trained",
    )
    return p


def train_spec(argv, *, ladder: bool, runner):
    """Parse the command line, train what is not trained yet: an exit code (bad spec, dry run) or
    (spec, config, out_dir, plan, runs)."""
    kind = "ladder" if ladder else "sweep"
    example = "decisions/ladders/width.toml" if ladder else "decisions/sweeps/lr.toml"
    args = parser(f"python -m ddpm.experiments.{kind}", example).parse_args(command_line(argv))
    if args.jobs < 1:
        return error(kind, f"--jobs {args.jobs}: must be ≥ 1 (workers in this process, runs trained at a time)")
    if args.workers < 0:
        return error(kind, f"--workers {args.workers}: must be ≥ 0 (worker processes to start; 0: none apart)")
    studies.GRACE_SECONDS, studies.HEARTBEAT_SECONDS = args.grace, min(studies.HEARTBEAT_SECONDS, args.grace / 6)
    try:
        spec, config, points, out_dir, plan = prepare(args, ladder=ladder)
        if args.dry_run:
            return 0
        if args.workers > 1:  # N worker processes, then the results of them all
            return spawn_workers(args, kind)
        runs = run_points(
            spec,
            points,
            out_dir,
            budget=plan["budget"],
            runner=runner,
            retry_failed=args.retry_failed,
            jobs=args.jobs,
            report_only=args.report,
            storage=args.storage,
            threads=args.threads,
            plan=plan,
        )
    except SpecError as err:
        return error(kind, str(err))
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
