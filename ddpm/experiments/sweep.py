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
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import optuna

from ddpm.cli import command_line, error
from ddpm.decisions.adr import fmt
from ddpm.experiments import results
from ddpm.experiments import study as studies
from ddpm.experiments.metrics import trial_metrics
from ddpm.experiments.plan import REPO_ROOT, prepare, run_name, run_overrides, train_command
from ddpm.experiments.spec import SpecError
from ddpm.files import read_json, write_json

STDERR_TAIL = 2000  # characters of a failed trial's output kept in failed.json


def _die_with_parent():  # Linux: a worker killed with SIGKILL takes its train.py along, so no run has two writers
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def subprocess_runner(cmd: list, log_path: str) -> tuple:
    """Run ``cmd`` with its output appended to ``log_path``; (exit code, the log's tail). Interrupting kills the child,
    and so does the death of this process."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "a") as log:
        code = subprocess.run(
            cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        ).returncode
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


class Workers:
    """``jobs`` workers in this process: each claims a trial, trains its run (or skips a finished one), and tells
    the study, until nothing waits; then waits for the other workers' runs, taking over any whose worker went
    silent. Prints "run i of N", the time left at the pace so far, and where each run's log is."""

    def __init__(self, spec, study, units: list, out_dir: str, *, runner, threads, log):
        self.spec, self.study, self.out_dir, self.runner, self.threads = spec, study, out_dir, runner, threads
        self.units, self.order = {u.run: u for u in units}, {u.run: i for i, u in enumerate(units)}
        self.lock, self.log_line = threading.Lock(), log
        self.started, self.trained = time.monotonic(), 0

    def log(self, line: str) -> None:
        with self.lock:  # print writes a line and its newline apart: two workers' lines would run into one another
            self.log_line(line)

    def run(self, jobs: int) -> None:
        if jobs == 1:  # no thread: a Ctrl-C reaches the one worker directly
            self.work()
            return
        pool = [threading.Thread(target=self.work, daemon=True) for _ in range(jobs)]
        for t in pool:
            t.start()
        for t in pool:
            while t.is_alive():
                t.join(timeout=1)

    def work(self) -> None:
        while True:
            trial = studies.claim(self.study, self.order)
            if trial is None:
                if studies.take_over_stale(self.study):
                    continue
                if not studies.counts(self.study).get("RUNNING"):
                    return
                time.sleep(studies.POLL_SECONDS)  # others still train: wait, in case one of them dies
                continue
            self.one(trial)

    def one(self, trial) -> None:
        unit = self.units[trial.user_attrs["run"]]
        studies.record_params(trial, self.spec.vary, self.spec.seeds)
        run_dir = os.path.join(self.out_dir, unit.run)
        status = run_status(run_dir, unit.steps)
        if status in results.NOT_TRAINED:
            done = sum(t.state.is_finished() for t in self.study.get_trials(deepcopy=False))
            total = len(self.units)
            pace = (time.monotonic() - self.started) / self.trained if self.trained else None
            left = f", about {pace * (total - done) / 60:.0f} min left at this pace" if pace else ""
            self.log(
                f"run {done + 1} of {total}: {unit.run}{left}; log: {os.path.join(self.out_dir, '.logs', unit.run + '.log')}"
            )
            with studies.Beating(self.study, trial), studies.handed_back_if_interrupted(self.study, trial):
                status = _train(
                    self.spec,
                    unit.point,
                    unit.seed,
                    unit.run,
                    self.out_dir,
                    budget=unit.steps,
                    runner=self.runner,
                    threads=self.threads,
                    log=self.log,
                )
            self.trained += 1
        else:
            self.log(f"{unit.run}: {status} already, skipped")
        if status == "finished":
            value = trial_metrics(run_dir, target=self.spec.target_accuracy).get(self.spec.metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.study.tell(trial, value)
            else:  # finished without a value of the metric (a target not reached): Optuna's PRUNED, and why
                trial.set_user_attr("metric", f"no {self.spec.metric}")
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)


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


def spawn_workers(args, kind: str) -> int:
    """``--workers N``: N processes of this command (one worker each, on cores / N threads a run), then the results."""
    threads = args.threads or max(1, len(os.sched_getaffinity(0)) // args.workers)
    cmd = [
        sys.executable,
        "-m",
        f"ddpm.experiments.{kind}",
        args.spec,
        "--runs-dir",
        args.runs_dir,
        "--config",
        args.config,
        "--threads",
        str(threads),
    ] + (["--storage", args.storage] if args.storage else [])
    cmd += ["--retry-failed"] if args.retry_failed else []
    cmd += ["--grace", str(args.grace)]
    procs = [subprocess.Popen(cmd, cwd=REPO_ROOT) for _ in range(args.workers)]
    codes = [p.wait() for p in procs]
    return max(codes)


def main(argv=None, *, runner=subprocess_runner) -> int:
    done = train_spec(argv, ladder=False, runner=runner)
    if isinstance(done, int):
        return done
    _, config, out_dir, plan, runs = done
    print(f"results → {results.write(plan, runs, out_dir, current=config)['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
