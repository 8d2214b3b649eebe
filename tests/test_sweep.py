"""Sweeps (ddpm/experiments/): the draws' statistics, reproducibility, spec errors, the runner's resume and failure
handling (with a fake runner), the metrics, one real two-trial sweep of train.py at tiny sizes, and
``make adr FROM=`` writing an ADR that the decisions check accepts once Accepted and config.py follows it."""

import json
import math
import os
import re
import shutil
import threading
import types

import numpy as np
import pytest

from ddpm.decisions.check import check
from ddpm.decisions.config_file import read_config
from ddpm.decisions.scaffold import from_results, new_adr
from ddpm.experiments import plan, sweep
from ddpm.experiments.metrics import steps_to_target, trial_metrics, window_mean
from ddpm.experiments.results import aggregate, spread
from ddpm.experiments.search import Dimension, dimension, draw_trials
from ddpm.experiments.spec import SpecError, load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(
    DATASET_SIZE=64,
    IMAGE_SIZE=16,
    BATCH_SIZE=16,
    NORM_GROUPS=4,
    ATTENTION_HEADS=2,
    TEXT_WIDTH=16,
    TEXT_HEADS=2,
    TEXT_LAYERS=1,
    TIME_EMB_DIM=16,
    TIMESTEPS=50,
    NUM_INFERENCE_STEPS=3,
    PROBE_NUM_STEPS=3,
    SAMPLE_GRID_SIZE=4,
    EPOCHS=2,
    WARMUP_STEPS=2,
    EVAL_EVERY=0,
    COMPILE=False,
)  # as tests/test_train_sample.py's TINY


def write_spec(path, *, vary, base=None, **keys):
    """A spec file from Python values (TOML written by hand: tomllib only reads)."""

    def lit(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    lines = [f"{k} = {lit(v)}" for k, v in keys.items()]
    lines += ["[base]"] + [f"{k} = {lit(v)}" for k, v in (base or {}).items()]
    for name, table in vary.items():
        lines += [f"[vary.{name}]"] + [f"{k} = {lit(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# ---- the draws -------------------------------------------------------------------------------------------
def test_log_uniform_draws_spread_evenly_over_decades():
    values = Dimension("LEARNING_RATE", "log_uniform", [1e-4, 1e-1]).draw(np.random.default_rng(0), 3000)
    assert all(1e-4 <= v <= 1e-1 for v in values)
    counts = np.histogram(np.log10(values), bins=[-4, -3, -2, -1])[0]
    assert all(abs(c - 1000) < 100 for c in counts), counts  # binomial sd ≈ 26: 100 is ~4 sd


def test_one_minus_10_pow_draws_spread_evenly_over_the_exponent():
    values = Dimension("EMA_DECAY", "one_minus_10_pow", [-4, -1]).draw(np.random.default_rng(1), 3000)
    assert all(0.9 <= v <= 0.9999 for v in values)
    counts = np.histogram(np.log10(1 - np.array(values)), bins=[-4, -3, -2, -1])[0]
    assert all(abs(c - 1000) < 100 for c in counts), counts


def test_other_kinds_stay_in_range_and_choices_are_balanced():
    rng = np.random.default_rng(2)
    assert set(Dimension("NUM_RES_BLOCKS", "int_uniform", [1, 3]).draw(rng, 300)) == {1, 2, 3}
    assert all(0 <= v <= 0.2 for v in Dimension("DROPOUT", "uniform", [0.0, 0.2]).draw(rng, 300))
    picks = Dimension("BASE_CHANNELS", "choice", [16, 32, 48]).draw(rng, 7)
    assert sorted(picks.count(c) for c in (16, 32, 48)) == [2, 2, 3]
    assert Dimension("SEED", "value", 3).draw(rng, 2) == [3, 3]
    assert dimension("CHANNEL_MULTS", {"choice": [[1, 2], [1, 2, 2]]}).arg == [(1, 2), (1, 2, 2)]  # tuples


def test_the_sweep_seed_decides_the_trials():
    dims = [
        dimension("LEARNING_RATE", {"log_uniform": [1e-4, 1e-2]}),
        dimension("EMA_DECAY", {"one_minus_10_pow": [-3, -1]}),
    ]
    assert draw_trials(dims, 5, seed=7) == draw_trials(dims, 5, seed=7)
    assert draw_trials(dims, 5, seed=7) != draw_trials(dims, 5, seed=8)


@pytest.mark.parametrize(
    "keys, vary, needle",
    [
        (dict(trials=2, budget_steps=3, colour="red"), {"LEARNING_RATE": {"value": 0.001}}, "unknown key 'colour'"),
        (dict(trials=2), {"LEARNING_RATE": {"value": 0.001}}, "budget_steps"),
        (dict(trials=2, budget_steps=3), {"LERNING_RATE": {"value": 0.001}}, "vary.LERNING_RATE"),
        (
            dict(trials=2, budget_steps=3),
            {"LEARNING_RATE": {"log_uniform": [0.01, 0.001]}},
            "vary.LEARNING_RATE.log_uniform",
        ),
        (dict(trials=0, budget_steps=3), {"LEARNING_RATE": {"value": 0.001}}, "trials"),
        (dict(trials=2, budget_steps=3, metric="fid"), {"LEARNING_RATE": {"value": 0.001}}, "metric = 'fid'"),
        (dict(trials=2, budget_steps=3, budget_tflop=88), {"LEARNING_RATE": {"value": 0.001}}, "exactly one of"),
        (dict(trials=2, budget_tflop=0), {"LEARNING_RATE": {"value": 0.001}}, "budget_tflop = 0"),
        (dict(trials=2, budget_tflop=True), {"LEARNING_RATE": {"value": 0.001}}, "budget_tflop = True"),
    ],
)
def test_a_bad_spec_is_one_line_naming_the_file_and_key(tmp_path, keys, vary, needle):
    path = write_spec(tmp_path / "bad.toml", vary=vary, **keys)
    with pytest.raises(SpecError) as err:
        load(path)
    assert needle in str(err.value) and path in str(err.value) and "\n" not in str(err.value)


def test_the_shipped_specs_load():
    sweeps = os.path.join(ROOT, "decisions", "sweeps")
    for name in sorted(os.listdir(sweeps)):  # every spec, so a renamed constant cannot strand one
        load(os.path.join(sweeps, name))
    for name in ("lr", "ema"):
        spec = load(os.path.join(sweeps, f"{name}.toml"))
        assert spec.trials >= 2 and len(spec.seeds) >= 2
    ladders = os.path.join(ROOT, "decisions", "ladders")
    for name in sorted(os.listdir(ladders)):
        assert len(load(os.path.join(ladders, name), ladder=True).rungs) >= 2
    assert {"width.toml", "depth.toml"} <= set(os.listdir(ladders))


def test_a_budget_longer_than_the_epochs_is_refused_before_training(tmp_path, capsys):
    spec = write_spec(
        tmp_path / "long.toml", vary={"LEARNING_RATE": {"value": 0.001}}, base=TINY, trials=1, budget_steps=9
    )  # TINY: 2 epochs of 64 // 16 = 4 batches end at step 8
    runner = FakeRunner()
    assert sweep.main([spec, "--runs-dir", str(tmp_path / "runs")], runner=runner) == 2
    assert runner.calls == [] and "EPOCHS = 2 ends it at 8" in capsys.readouterr().err


def test_a_compute_budget_gives_each_point_the_steps_its_flops_allow():
    """budget_tflop: steps = TFLOP / (3 × forward FLOPs per image × batch), each point with its own model and batch,
    so that twice the batch trains half the steps and a wider model fewer."""
    from ddpm.decisions.config_file import read_config
    from ddpm.measure.workload import model_size

    config = {**read_config(os.path.join(ROOT, "config.py")), **TINY}
    spec = types.SimpleNamespace(budget_steps=None, budget_fraction=None, budget_tflop=0.01, base={"BASE_CHANNELS": 8})
    flops = model_size({**config, "BASE_CHANNELS": 8})["fwd_flops_per_image"]
    steps = plan.budget_steps(spec, config)
    assert steps == round(0.01e12 / (3 * flops * TINY["BATCH_SIZE"])) and steps > 1
    assert plan.budget_steps(spec, config, {"BATCH_SIZE": 2 * TINY["BATCH_SIZE"]}) in (steps // 2, (steps + 1) // 2)
    assert plan.budget_steps(spec, config, {"BASE_CHANNELS": 16}) < steps
    assert plan.budget_steps(types.SimpleNamespace(**{**vars(spec), "budget_tflop": 1e-12}), config) == 1  # never 0


# ---- metrics and ranking ---------------------------------------------------------------------------------
def test_steps_to_target_and_the_smoothing_window():
    curve = [
        {"step": 100, "joint_accuracy": 0.5},
        {"step": 200, "joint_accuracy": 0.93},
        {"step": 300, "joint_accuracy": 0.8},
    ]
    assert steps_to_target(curve, 0.9) == 200
    assert steps_to_target(curve, 0.95) is None
    assert window_mean([(25, 4.0), (50, 3.0), (75, 2.0), (100, 1.0)], 100) == 1.0  # last quarter: step > 75
    assert window_mean([(100, 2.0)], 1000) == 2.0  # at least the last point


def test_points_rank_by_missing_seeds_then_mean():
    runs = [
        dict(trial="a", overrides={}, status="finished", seed=0, steps_to_target=300),
        dict(trial="a", overrides={}, status="finished", seed=1, steps_to_target=None),
        dict(trial="b", overrides={}, status="finished", seed=0, steps_to_target=500),
        dict(trial="b", overrides={}, status="finished", seed=1, steps_to_target=700),
        dict(trial="c", overrides={}, status="failed", seed=0),
    ]
    assert [r["trial"] for r in aggregate(runs, "steps_to_target", "min")] == ["b", "a", "c"]
    assert spread([1.0, 3.0, None, 2.0]) == {"n": 3, "missing": 1, "mean": 2.0, "min": 1.0, "median": 2.0, "max": 3.0}


def test_eval_every_steps_schedules_the_probe():
    from ddpm.training import monitor as train  # the loop's schedule of probe points

    state = types.SimpleNamespace(step=200, epoch=0)
    assert train.eval_due({"EVAL_EVERY_STEPS": 100, "EVAL_EVERY": 1}, state, False, stepped=True)
    assert not train.eval_due({"EVAL_EVERY_STEPS": 100, "EVAL_EVERY": 1}, state, True, stepped=False)  # skipped step
    assert not train.eval_due({"EVAL_EVERY_STEPS": 0, "EVAL_EVERY": 1}, state, False, stepped=True)
    state.epoch = 2
    assert train.eval_due({"EVAL_EVERY_STEPS": 0, "EVAL_EVERY": 1}, state, True, stepped=True)  # today's behaviour
    assert [
        s
        for s in range(1, 601)
        if train.eval_due(
            {"EVAL_EVERY_STEPS": 100, "EVAL_EVERY": 1}, types.SimpleNamespace(step=s, epoch=0), False, stepped=True
        )
    ] == [100, 200, 300, 400, 500, 600]


# ---- the runner, with a fake train.py ---------------------------------------------------------------------
class FakeRunner:
    """Writes what train.py would write in run.json (no events); ``fail`` maps a run name to an outcome."""

    def __init__(self, fail=None, interrupt_at=None, accuracy=lambda sets: 0.95):
        self.calls, self.fail, self.interrupt_at, self.accuracy = [], fail or {}, interrupt_at, accuracy

    def __call__(self, cmd, log_path):
        run = cmd[cmd.index("--run") + 1] if "--run" in cmd else cmd[cmd.index("--resume") + 1]
        self.calls.append(run)
        if run == self.interrupt_at:
            raise KeyboardInterrupt  # the sweep is killed while this run trains
        sets = dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "--set")
        budget = int(cmd[cmd.index("--max-steps") + 1])
        run_dir = os.path.join(cmd[cmd.index("--runs-dir") + 1], run)
        os.makedirs(run_dir, exist_ok=True)
        outcome = self.fail.get(run)
        if outcome == "crash":
            return 1, "Traceback ...\nRuntimeError: boom"
        loss = float("nan") if outcome == "nan" else float(sets["LEARNING_RATE"]) * 100 + int(sets["SEED"]) * 0.01
        with open(os.path.join(run_dir, "run.json"), "w") as f:
            json.dump(
                {
                    "name": run,
                    "step": budget,
                    "final_loss": loss,
                    "quality_curve": [{"step": budget, "joint_accuracy": self.accuracy(sets), "minutes": 0.1}],
                },
                f,
            )
        return 0, "done"


def lr2(tmp_path, **changes):
    """The two-point learning-rate spec "lr2" (2 seeds, 4 steps, sweep seed 3), with ``changes`` to its keys."""
    keys = {**dict(trials=2, seeds=2, budget_steps=4, metric="final_loss", seed=3), **changes}
    return write_spec(tmp_path / "lr2.toml", vary={"LEARNING_RATE": {"log_uniform": [1e-4, 1e-2]}}, **keys)


@pytest.fixture
def lr_spec(tmp_path):
    return lr2(tmp_path)


def test_a_killed_sweep_resumes_without_redoing_finished_runs(tmp_path, lr_spec):
    runs_dir = str(tmp_path / "runs")
    first = FakeRunner(interrupt_at="t1-s0")
    with pytest.raises(KeyboardInterrupt):
        sweep.main([lr_spec, "--runs-dir", runs_dir], runner=first)
    assert first.calls == ["t0-s0", "t0-s1", "t1-s0"]
    os.makedirs(os.path.join(runs_dir, "lr2", "t1-s0"))  # the killed run left a folder without a checkpoint
    second = FakeRunner()
    assert sweep.main([lr_spec, "--runs-dir", runs_dir], runner=second) == 0
    assert second.calls == ["t1-s0", "t1-s1"]
    results = json.load(open(os.path.join(runs_dir, "lr2", "results.json")))
    assert [r["metric"]["n"] for r in results["rows"]] == [2, 2]
    means = [r["metric"]["mean"] for r in results["rows"]]
    assert means == sorted(means)  # best (lowest final loss) first
    for name in ("results.md", "results.png"):
        assert os.path.getsize(os.path.join(runs_dir, "lr2", name)) > 0
    assert os.listdir(os.path.join(runs_dir, "lr2", ".hparams"))  # one add_hparams per run


def test_report_writes_the_results_of_a_stopped_sweep_and_trains_nothing(tmp_path, lr_spec):
    runs_dir = str(tmp_path / "runs")
    with pytest.raises(KeyboardInterrupt):  # stopped while its second run trained: one run finished
        sweep.main([lr_spec, "--runs-dir", runs_dir], runner=FakeRunner(interrupt_at="t0-s1"))
    untouched = FakeRunner()
    assert sweep.main([lr_spec, "--runs-dir", runs_dir, "--report"], runner=untouched) == 0
    assert untouched.calls == []
    results = json.load(open(os.path.join(runs_dir, "lr2", "results.json")))
    assert {r["trial"]: (r["metric"]["n"], r["failed"]) for r in results["rows"]} == {"t0": (1, 0), "t1": (0, 0)}
    table = open(os.path.join(runs_dir, "lr2", "results.md")).read()
    assert "s0: " in table and "s1: not trained" in table and "failed" not in table
    assert sweep.main([lr_spec, "--runs-dir", runs_dir], runner=untouched) == 0  # without --report it trains the rest
    assert untouched.calls == ["t0-s1", "t1-s0", "t1-s1"]


def test_points_that_never_reach_the_target_rank_by_how_close_they_ended(tmp_path):
    spec = write_spec(
        tmp_path / "far.toml",
        vary={"LEARNING_RATE": {"log_uniform": [1e-4, 1e-2]}},
        trials=3,
        seeds=2,
        budget_steps=4,
        metric="steps_to_target",
        seed=3,
    )
    runs_dir = str(tmp_path / "runs")
    # Every run ends below the 0.9 target; the larger the learning rate, the closer.
    runner = FakeRunner(accuracy=lambda sets: min(0.8, float(sets["LEARNING_RATE"]) * 50))
    assert sweep.main([spec, "--runs-dir", runs_dir], runner=runner) == 0
    results = json.load(open(os.path.join(runs_dir, "far", "results.json")))
    assert all(row["metric"]["n"] == 0 for row in results["rows"])  # no seed has a step to the target
    ended = [row["final_accuracy"]["mean"] for row in results["rows"]]
    assert ended == sorted(ended, reverse=True) and ended[0] > ended[-1]
    text = open(os.path.join(runs_dir, "far", "results.md")).read()
    assert "| final joint accuracy |" in text and "s0: not reached, s1: not reached" in text
    assert "nan" not in text


def test_a_run_with_a_checkpoint_is_resumed_not_restarted(tmp_path, lr_spec):
    ckpts = tmp_path / "runs" / "lr2" / "t0-s0" / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "ckpt-epoch0000-step0000002.pt").write_bytes(b"")
    commands = []
    runner = FakeRunner()
    sweep.main(
        [lr_spec, "--runs-dir", str(tmp_path / "runs")],
        runner=lambda cmd, log: (commands.append(cmd), runner(cmd, log))[1],
    )
    assert commands[0][commands[0].index("--resume") + 1] == "t0-s0" and "--run" not in commands[0]
    assert all("--run" in c for c in commands[1:])


def test_jobs_train_runs_side_by_side_on_a_share_of_the_cores_each(tmp_path, lr_spec, capsys):
    """--jobs 2: two runs are in flight at once (each waits at a barrier for the other, which breaks after a minute
    if they ran one after the other), each with --threads = half the cores; the results are a sequential sweep's."""
    barrier, runner, commands = threading.Barrier(2, timeout=60), FakeRunner(), []

    def side_by_side(cmd, log):
        commands.append(cmd)
        barrier.wait()
        return runner(cmd, log)

    assert sweep.main([lr_spec, "--runs-dir", str(tmp_path / "par"), "--jobs", "2"], runner=side_by_side) == 0
    started = [line for line in capsys.readouterr().out.splitlines() if "steps with" in line]
    assert len(started) == 4 and all(line.count("steps with") == 1 for line in started)  # never two runs on a line
    assert sorted(runner.calls) == ["t0-s0", "t0-s1", "t1-s0", "t1-s1"]
    assert {c[c.index("--threads") + 1] for c in commands} == {str(max(1, len(os.sched_getaffinity(0)) // 2))}
    assert sweep.main([lr_spec, "--runs-dir", str(tmp_path / "seq")], runner=FakeRunner()) == 0
    par, seq = (json.load(open(tmp_path / d / "lr2" / "results.json")) for d in ("par", "seq"))
    assert par["rows"] == seq["rows"] and par["best"] == seq["best"]
    assert sweep.main([lr_spec, "--runs-dir", str(tmp_path / "par"), "--jobs", "0"], runner=FakeRunner()) == 2
    assert "--jobs 0: must be ≥ 1" in capsys.readouterr().err


def test_crashed_and_non_finite_trials_are_recorded_and_the_sweep_goes_on(tmp_path, lr_spec):
    runs_dir = str(tmp_path / "runs")
    runner = FakeRunner(fail={"t0-s0": "crash", "t1-s1": "nan"})
    assert sweep.main([lr_spec, "--runs-dir", runs_dir], runner=runner) == 0
    assert runner.calls == ["t0-s0", "t0-s1", "t1-s0", "t1-s1"]
    failed = json.load(open(os.path.join(runs_dir, "lr2", "t0-s0", "failed.json")))
    assert "exited with 1" in failed["reason"] and "RuntimeError: boom" in failed["output_tail"]
    assert "not finite" in json.load(open(os.path.join(runs_dir, "lr2", "t1-s1", "failed.json")))["reason"]
    text = open(os.path.join(runs_dir, "lr2", "results.md")).read()
    assert "s0: failed" in text and "t0-s0: train.py exited with 1" in text
    again = FakeRunner()
    sweep.main([lr_spec, "--runs-dir", runs_dir], runner=again)
    assert again.calls == []  # failed runs are skipped too …
    sweep.main([lr_spec, "--runs-dir", runs_dir, "--retry-failed"], runner=again)
    assert again.calls == ["t0-s0", "t1-s1"]  # … unless asked


def test_a_changed_spec_does_not_mix_into_an_old_sweep(tmp_path, lr_spec, capsys):
    runs_dir = str(tmp_path / "runs")
    sweep.main([lr_spec, "--runs-dir", runs_dir], runner=FakeRunner())
    other = lr2(tmp_path, seed=4)
    assert sweep.main([other, "--runs-dir", runs_dir], runner=FakeRunner()) == 2
    assert "other trials" in capsys.readouterr().err
    rebased = lr2(tmp_path, base={"EMA_DECAY": 0.99})
    assert sweep.main([rebased, "--runs-dir", runs_dir], runner=FakeRunner()) == 2  # the fixed values differ


def test_runs_trained_under_another_config_py_are_not_mixed_in(tmp_path, lr_spec, capsys):
    """After an ADR changes config.py, a finished run of the old default is refused, not skipped as done."""
    runs_dir, config_path = str(tmp_path / "runs"), os.path.join(ROOT, "config.py")
    sweep.main([lr_spec, "--runs-dir", runs_dir], runner=FakeRunner())
    config = read_config(config_path)
    for point in json.load(open(os.path.join(runs_dir, "lr2", "sweep.json")))["points"]:
        for seed in (0, 1):  # what train.py records: config.py with the run's overrides
            path = os.path.join(runs_dir, "lr2", f"{point['trial']}-s{seed}", "run.json")
            run = {**json.load(open(path)), "config": {**config, **point["overrides"], "SEED": seed}}
            json.dump(run, open(path, "w"))
    same = FakeRunner()
    assert sweep.main([lr_spec, "--runs-dir", runs_dir], runner=same) == 0 and same.calls == []
    changed = tmp_path / "config.py"
    text = open(config_path).read()
    text = re.sub(r"(?m)^BASE_CHANNELS = \d+", f"BASE_CHANNELS = {config['BASE_CHANNELS'] + 8}", text)
    text = re.sub(r"(?m)^GUIDANCE_SCALE = [\d.]+", f"GUIDANCE_SCALE = {config['GUIDANCE_SCALE'] + 1}", text)
    changed.write_text(text)
    runner = FakeRunner()
    assert sweep.main([lr_spec, "--runs-dir", runs_dir, "--config", str(changed)], runner=runner) == 2
    err = capsys.readouterr().err
    assert runner.calls == []
    assert f"t1-s1: BASE_CHANNELS = {config['BASE_CHANNELS']} there, {config['BASE_CHANNELS'] + 8} now" in err
    assert "GUIDANCE_SCALE" not in err  # a resume may change it: the runs' training is the same


def test_more_seeds_train_only_the_new_seeds(tmp_path, lr_spec):
    runs_dir = str(tmp_path / "runs")
    sweep.main([lr_spec, "--runs-dir", runs_dir], runner=FakeRunner())
    more = lr2(tmp_path, seeds=3)
    runner = FakeRunner()
    assert sweep.main([more, "--runs-dir", runs_dir], runner=runner) == 0
    assert runner.calls == ["t0-s2", "t1-s2"]
    results = json.load(open(os.path.join(runs_dir, "lr2", "results.json")))
    assert [r["metric"]["n"] for r in results["rows"]] == [3, 3]


# ---- one real sweep: train.py twice, one trial fails on a bad value -----------------------------------------
def test_a_real_two_trial_sweep(tmp_path):
    spec = write_spec(
        tmp_path / "tiny.toml",
        vary={"BASE_CHANNELS": {"choice": [8, 7]}},
        base=TINY,
        trials=2,
        seeds=1,
        budget_steps=2,
        metric="final_loss",
    )  # 7 channels: not divisible by 4 groups
    runs_dir = tmp_path / "runs"
    assert sweep.main([spec, "--runs-dir", str(runs_dir)]) == 0
    run = json.load(open(runs_dir / "tiny" / "t0-s0" / "run.json"))
    assert run["step"] == 2 and math.isfinite(run["final_loss"])
    assert run["provenance"]["tags"] == {"sweep": "tiny", "trial": "t0"}
    assert run["provenance"]["overrides"]["BASE_CHANNELS"] == 8 and run["provenance"]["exploratory"]
    failed = json.load(open(runs_dir / "tiny" / "t1-s0" / "failed.json"))
    assert failed["returncode"] == 2 and "BASE_CHANNELS" in failed["reason"]
    results = json.load(open(runs_dir / "tiny" / "results.json"))
    best = results["rows"][0]["runs"][0]
    assert best["run"] == "t0-s0" and best["smoothed_loss"] is not None and best["images_per_s"] > 0
    assert set(best["loss_by_t"]) == {"q1", "q2", "q3", "q4"}
    rerun = FakeRunner()
    sweep.main([spec, "--runs-dir", str(runs_dir)], runner=rerun)
    assert rerun.calls == []  # finished and failed: nothing to do


# ---- make adr FROM= --------------------------------------------------------------------------------------
def test_make_adr_from_a_sweep_passes_the_check_once_accepted(tmp_path, lr_spec):
    runs_dir = str(tmp_path / "runs")
    sweep.main([lr_spec, "--runs-dir", runs_dir], runner=FakeRunner())
    decisions, config = tmp_path / "decisions", tmp_path / "config.py"
    shutil.copytree(os.path.join(ROOT, "decisions"), decisions)
    shutil.copy(os.path.join(ROOT, "config.py"), config)
    path = new_adr(
        "Learning rate from the sweep",
        config_path=config,
        decisions_dir=decisions,
        results=os.path.join(runs_dir, "lr2"),
    )
    text = path.read_text()
    best = json.load(open(os.path.join(runs_dir, "lr2", "results.json")))["best"]["set"]["LEARNING_RATE"]
    old = read_config(config)["LEARNING_RATE"]
    assert f"- LEARNING_RATE: {old} → {best}" in text  # old: what config.py says today
    assert "make sweep SPEC=" in text and "| 1 | t" in text  # the command and the table
    path.write_text(re.sub(r"## Status\n\nProposed", "## Status\n\nAccepted", text))
    assert any("LEARNING_RATE" in e for e in check(config, decisions, index=False))  # config.py not edited yet
    config.write_text(config.read_text().replace(f"LEARNING_RATE = {old}", f"LEARNING_RATE = {best}"))
    errors = check(config, decisions, index=False)
    # Other engineers' ADR numbers are written in parallel; only the gap they leave may be reported here.
    assert [e for e in errors if "missing ADR number" not in e] == []


def test_make_adr_from_a_sweep_where_no_seed_reached_the_target_says_so(tmp_path):
    results = {
        "kind": "sweep",
        "name": "b2",
        "command": "make sweep SPEC=b2.toml",
        "points": [{}],
        "seeds": [0, 1, 2],
        "metric": "steps_to_target",
        "direction": "min",
        "budget": 1500,
        "table": "| 1 | t0 |",
        "best": {"trial": "t0", "set": {"ADAM_BETAS": "(0.9, 0.99)"}, "metric": {"n": 0, "mean": None}},
    }
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "config.py").write_text("ADAM_BETAS = (0.9, 0.999)\n")
    lines, context = from_results(tmp_path, tmp_path / "config.py")
    text = "\n".join(context)
    assert lines == ["- ADAM_BETAS: (0.9, 0.999) → (0.9, 0.99)"]
    assert "1 point × 3 seeds" in text and "none reached the target" in text
    assert "mean —" not in text and "0 seed" not in text  # stop 23's ADR 0039 draft read "mean — over 0 seed(s)"


def test_make_adr_from_a_folder_without_results_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="no results.json there"):
        new_adr("x", config_path=os.path.join(ROOT, "config.py"), decisions_dir=tmp_path, results=tmp_path)


def test_trial_metrics_read_the_tensorboard_events(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path)) as w:
        for step, loss in ((25, 0.5), (50, 0.4), (75, 0.3), (100, 0.2)):
            w.add_scalar("train/loss", loss, step)
            w.add_scalar("train/images_per_s", 10.0 if step == 25 else 100.0, step)
            w.add_scalar("loss_by_t/q4", loss / 2, step)
    (tmp_path / "run.json").write_text(json.dumps({"step": 100, "final_loss": 0.2, "quality_curve": []}))
    m = trial_metrics(str(tmp_path), target=0.9)
    assert m["smoothed_loss"] == pytest.approx(0.2) and m["loss_by_t"]["q4"] == pytest.approx(0.1)
    assert m["images_per_s"] == 100.0 and m["loss_by_t"]["q1"] is None and m["steps_to_target"] is None
