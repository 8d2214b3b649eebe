"""Who trains which run, and where: the workers of a sweep (``ddpm.experiments.sweep``).

A worker claims a waiting trial from the study (``ddpm.experiments.study``), trains its run with ``train.py`` in a
subprocess (resuming it where a checkpoint exists), tells the study the run's metric, and takes the next. ``--jobs
N`` runs N workers in one process (threads); ``--workers N`` starts N processes of the sweep, one worker each.
A train.py dies with the worker that started it (Linux's parent-death signal), so no run ever has two writers.
"""

import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import optuna

from ddpm.decisions.adr import fmt
from ddpm.experiments import results
from ddpm.experiments import study as studies
from ddpm.experiments.metrics import trial_metrics
from ddpm.experiments.plan import REPO_ROOT, run_overrides, train_command
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
