"""Sweeps on several workers (issue 43, ADR 0054): real worker processes on one Optuna storage, tiny trials.

Each run is trained once; a worker killed with SIGKILL leaves its run to another, which resumes it from its
checkpoint; a finished study trains nothing; the draws are the runner's of before; bad storage is one line.
"""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from test_sweep import TINY, FakeRunner, write_spec
from test_train_sample import ROOT

from ddpm.experiments import plan, sweep
from ddpm.experiments import study as studies
from ddpm.experiments.search import draw_trials
from ddpm.experiments.spec import load

TRIALS = {"LEARNING_RATE": {"log_uniform": [1e-4, 1e-2]}}


def spec_file(tmp_path, name, **keys):
    keys = {**dict(name=name, trials=3, seeds=2, budget_steps=4, metric="final_loss", seed=3), **keys}
    return write_spec(tmp_path / f"{name}.toml", vary=TRIALS, base={**TINY, "EPOCHS": 10}, **keys)


def worker(spec, runs, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    cmd = [sys.executable, "-m", "ddpm.experiments.sweep", spec, "--runs-dir", str(runs), "--threads", "1", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def starts(runs, name, run):
    """How often train.py started on ``run`` (fresh or resumed), from its log."""
    log = (runs / name / ".logs" / f"{run}.log").read_text()
    return log.count("done:"), log.count("resuming")


def test_two_workers_train_each_run_once_and_a_third_start_trains_nothing(tmp_path):
    spec, runs = spec_file(tmp_path, "pair"), tmp_path / "runs"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ddpm.experiments.sweep",
            spec,
            "--runs-dir",
            str(runs),
            "--workers",
            "2",
            "--threads",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    names = [f"t{i}-s{s}" for i in range(3) for s in range(2)]
    assert all(starts(runs, "pair", name) == (1, 0) for name in names)  # trained once, by one of the two
    assert "run 1 of 6" in out.stdout and ".logs/t0-s0.log" in out.stdout
    study = optuna.load_study(study_name="pair", storage=f"sqlite:///{runs / 'pair' / 'study.db'}")
    assert sorted(t.user_attrs["run"] for t in study.trials) == sorted(names)
    assert {t.state.name for t in study.trials} == {"COMPLETE"}
    assert sorted(t.params["SEED"] for t in study.trials) == [0, 0, 0, 1, 1, 1]
    third = FakeRunner()
    assert sweep.main([spec, "--runs-dir", str(runs)], runner=third) == 0 and third.calls == []
    table = (runs / "pair" / "results.md").read_text()
    ranked = [line.split(" | ")[1] for line in table.splitlines() if line[:4] in ("| 1 ", "| 2 ", "| 3 ")]
    assert sorted(ranked) == ["t0", "t1", "t2"] and "Each pair on final_loss" in table


def test_a_killed_workers_run_is_resumed_by_another_from_its_checkpoint(tmp_path):
    spec, runs = spec_file(tmp_path, "kill", trials=1, budget_steps=40), tmp_path / "runs"
    first = worker(spec, runs)
    run_json, deadline = runs / "kill" / "t0-s0" / "run.json", time.monotonic() + 300

    def checkpointed():  # a checkpoint is written, then run.json names its step: kill after both
        try:
            return json.loads(run_json.read_text())["step"] > 0
        except (OSError, ValueError, KeyError):
            return False

    while not checkpointed():
        assert first.poll() is None and time.monotonic() < deadline, first.stdout.read() if first.poll() else "slow"
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)  # mid-trial: its train.py dies with it (PR_SET_PDEATHSIG)
    first.wait()
    record = json.loads((runs / "kill" / "t0-s0" / "run.json").read_text())
    assert 0 < record["step"] < 40, record["step"]
    second = worker(spec, runs, "--grace", "3")
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output[-3000:]
    done, resumed = starts(runs, "kill", "t0-s0")
    assert done == 1 and resumed == 1, (runs / "kill" / ".logs" / "t0-s0.log").read_text()[-2000:]
    assert json.loads((runs / "kill" / "t0-s0" / "run.json").read_text())["step"] == 40
    assert starts(runs, "kill", "t0-s1") == (1, 0)
    study = optuna.load_study(study_name="kill", storage=f"sqlite:///{runs / 'kill' / 'study.db'}")
    states = sorted((t.user_attrs["run"], t.state.name) for t in study.trials)
    assert states == [("t0-s0", "COMPLETE"), ("t0-s0", "FAIL"), ("t0-s1", "COMPLETE")]  # the dead one, and its copy


def test_the_draws_are_the_runners_of_before(tmp_path):
    spec = load(spec_file(tmp_path, "draws", trials=5))
    units = [studies.Unit(p, s, f"{p['trial']}-s{s}", 4) for p in plan.sweep_points(spec) for s in spec.seeds]
    assert [u.point["overrides"] for u in units[::2]] == draw_trials(spec.vary, 5, 3)  # search.py's, seed 3
    dims = {d.name: studies.distribution(d) for d in spec.vary}
    assert dims["LEARNING_RATE"].log and dims["LEARNING_RATE"].low == 1e-4


def test_a_bad_storage_and_a_changed_spec_are_one_line_and_nothing_trains(tmp_path, capsys):
    spec, runs = spec_file(tmp_path, "bad"), tmp_path / "runs"
    runner = FakeRunner()
    assert sweep.main([spec, "--runs-dir", str(runs), "--storage", "nosuchdb://x"], runner=runner) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "STORAGE=nosuchdb://x" in err and runner.calls == []
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    assert sweep.main([spec, "--runs-dir", str(runs), "--storage", storage], runner=runner) == 0
    other = spec_file(tmp_path, "bad", budget_steps=5)  # the same study name, another plan
    again = FakeRunner()
    assert sweep.main([other, "--runs-dir", str(tmp_path / "elsewhere"), "--storage", storage], runner=again) == 2
    assert "holds another plan (budget differ)" in capsys.readouterr().err and again.calls == []


@pytest.mark.parametrize(
    "kind, arg, expected",
    [
        ("log_uniform", [1e-4, 1e-2], "FloatDistribution(high=0.01, log=True, low=0.0001, step=None)"),
        ("one_minus_10_pow", [-3, -1], "FloatDistribution(high=0.999, log=False, low=0.9, step=None)"),
        ("int_uniform", [1, 3], "IntDistribution(high=3, log=False, low=1, step=1)"),
        ("choice", [(1, 2), (1, 2, 2)], "CategoricalDistribution(choices=('(1, 2)', '(1, 2, 2)'))"),
        ("value", 0.1, "CategoricalDistribution(choices=(0.1,))"),
    ],
)
def test_each_kind_of_draw_has_its_optuna_distribution(kind, arg, expected):
    from ddpm.experiments.search import Dimension

    assert repr(studies.distribution(Dimension("X", kind, arg))) == expected


@pytest.mark.parametrize("url", ["sqlite", "journal"])
def test_workers_claiming_at_once_never_take_the_same_run(url, tmp_path):
    """Eight workers, each with its own connection as separate processes have, race for 24 waiting runs: each run is
    taken exactly once. (SQLite through Python's sqlite3 did not begin a transaction before Optuna's read of the
    trial's state, so two workers could both see it WAITING and both set it RUNNING.)"""
    import threading

    url = f"sqlite:///{tmp_path}/s.db" if url == "sqlite" else f"journal:{tmp_path}/s.log"
    study = optuna.create_study(study_name="race", storage=studies.storage_for(url))
    for i in range(24):
        study.enqueue_trial({"x": i})
    workers = [optuna.load_study(study_name="race", storage=studies.storage_for(url)) for _ in range(8)]
    start, taken = threading.Barrier(len(workers)), []

    def work(s):
        start.wait()
        while (trial := studies.claim(s)) is not None:
            taken.append(trial._trial_id)

    threads = [threading.Thread(target=work, args=(s,)) for s in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == sorted(t._trial_id for t in study.get_trials())  # each once, none left waiting


def test_workers_started_together_on_a_fresh_database_all_open_it(tmp_path):
    """Workers started at once (``--workers N``, or by hand on several machines) each create Optuna's schema on the
    same fresh SQLite file: one creates the tables, the others find them made. (Optuna creates tables and alembic's
    version row outside one transaction: before, most rounds ended in 'table studies already exists' or a UNIQUE
    failure on alembic_version for some worker.)"""
    import threading

    for round_ in range(4):
        url, opened = f"sqlite:///{tmp_path}/fresh{round_}.db", []
        start = threading.Barrier(6)

        def open_it(url=url, start=start, opened=opened):
            start.wait()
            try:
                opened.append(studies.storage_for(url))
            except studies.SpecError as err:
                opened.append(err)

        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [o for o in opened if isinstance(o, Exception)] == [], f"round {round_}"
