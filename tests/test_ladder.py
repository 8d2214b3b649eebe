"""Ladders (ddpm/experiments/ladder.py): each verdict on synthetic numbers, and a two-rung ladder run end to end
with a fake train.py (the sizes are real: the UNet is built and its FLOPs counted)."""

import json
import os

import pytest

from ddpm.decisions.scaffold import new_adr
from ddpm.experiments import ladder
from ddpm.experiments.ladder import INCONCLUSIVE, MONOTONIC, NOT_MONOTONIC, TOO_FEW_SEEDS, verdict
from tests.test_sweep import ROOT, TINY, FakeRunner


@pytest.mark.parametrize(
    "values, direction, expected",
    [  # one list per rung, its seeds in order: the steps are judged paired by seed (make compare's rule)
        ([[1.0, 1.1, 1.05], [0.8, 0.9, 0.86], [0.5, 0.61, 0.55]], "min", MONOTONIC),  # each step ≈ -0.2, -0.3
        ([[1.0, 1.1, 1.05], [0.8, 0.9, 0.86], [0.95, 1.06, 1.0]], "min", NOT_MONOTONIC),  # the third clearly worse
        ([[1.0, 1.3, 0.9], [0.9, 1.2, 1.0], [0.5, 0.6, 0.55]], "min", INCONCLUSIVE),  # step 1: -0.1, -0.1, +0.1
        ([[0.2, 0.3, 0.25], [0.6, 0.7, 0.66]], "max", MONOTONIC),  # accuracy: higher is better
        ([[0.6, 0.7, 0.66], [0.2, 0.3, 0.25]], "max", NOT_MONOTONIC),
        ([[1.0], [0.5, 0.6]], "min", TOO_FEW_SEEDS),  # one seed: no spread to compare with
        ([[1.0, None], [0.5, 0.6]], "min", TOO_FEW_SEEDS),  # a failed seed leaves one value
    ],
)
def test_verdicts(values, direction, expected):
    assert verdict(values, direction).startswith(expected)


def test_an_unresolved_step_says_how_many_seeds_would_resolve_it():
    text = verdict([[1.0, 1.3, 0.9], [0.9, 1.2, 1.0], [0.5, 0.6, 0.55]], "min")
    assert text.startswith("not resolved: about ") and text.endswith(" seeds would resolve the closest step")


def test_a_clear_reversal_beats_an_unclear_step():
    """One step within the noise and another clearly worse: the reversal is evidence, so "not monotonic"."""
    assert verdict([[1.0, 1.2, 1.1], [0.95, 1.15, 1.2], [1.5, 1.6, 1.62]], "min") == NOT_MONOTONIC


class LadderRunner(FakeRunner):
    """Loss falls with BASE_CHANNELS (plus a little per seed); accuracy rises."""

    def __call__(self, cmd, log_path):
        sets = dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "--set")
        width, seed = int(sets["BASE_CHANNELS"]), int(sets["SEED"])
        code, tail = super().__call__(cmd + ["--set", "LEARNING_RATE=0"], log_path)
        path = os.path.join(cmd[cmd.index("--runs-dir") + 1], self.calls[-1], "run.json")
        record = json.load(open(path))
        record.update(
            final_loss=1.0 / width + 0.001 * seed,
            quality_curve=[{"step": record["step"], "joint_accuracy": width / 16 + 0.01 * seed}],
        )
        json.dump(record, open(path, "w"))
        return code, tail


def test_a_two_rung_ladder(tmp_path):
    base = "\n".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in TINY.items())
    spec = tmp_path / "w.toml"
    spec.write_text(
        f'name = "w"\nseeds = 2\nbudget_steps = 3\n[base]\n{base}\n'
        "[[rung]]\nBASE_CHANNELS = 8\n[[rung]]\nBASE_CHANNELS = 16\n"
    )
    runner = LadderRunner()
    assert ladder.main([str(spec), "--runs-dir", str(tmp_path / "runs")], runner=runner) == 0
    assert runner.calls == ["r0-s0", "r0-s1", "r1-s0", "r1-s1"]
    out = json.load(open(tmp_path / "runs" / "w" / "results.json"))
    small, large = out["rows"]
    assert small["params"] < large["params"] and small["fwd_flops_per_image"] < large["fwd_flops_per_image"]
    assert large["train_flops"] == 3 * large["fwd_flops_per_image"] * TINY["BATCH_SIZE"] * 3
    assert out["verdicts"] == {"final_loss": MONOTONIC, "final_accuracy": MONOTONIC}
    assert out["best"]["trial"] == "r1"
    text = open(tmp_path / "runs" / "w" / "results.md").read()
    assert "final_loss: **monotonic**" in text and f"{large['params']:,}" in text
    assert os.path.getsize(tmp_path / "runs" / "w" / "results.png") > 0
    adr = new_adr(
        "Width",
        config_path=os.path.join(ROOT, "config.py"),
        decisions_dir=tmp_path / "decisions",
        results=tmp_path / "runs" / "w",
    ).read_text()
    assert "Verdict on final_accuracy: monotonic.\n\n## Decision" in adr  # a heading after a blank line


def test_a_compute_matched_ladder_trains_the_wider_rung_fewer_steps(tmp_path):
    """budget_tflop: each rung's --max-steps is its own, the table says so, each rung's compute is within one step of
    the budget, and a second start skips the finished runs (their status is read against the rung's steps)."""
    base = "\n".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in TINY.items())
    spec = tmp_path / "iso.toml"
    spec.write_text(
        f'name = "iso"\nseeds = 2\nbudget_tflop = 0.002\n[base]\n{base}\n'
        "[[rung]]\nBASE_CHANNELS = 8\n[[rung]]\nBASE_CHANNELS = 16\n"
    )
    commands = []
    runner = LadderRunner()
    argv = [str(spec), "--runs-dir", str(tmp_path / "runs")]
    assert ladder.main(argv, runner=lambda cmd, log: (commands.append(cmd), runner(cmd, log))[1]) == 0
    steps = [int(c[c.index("--max-steps") + 1]) for c in commands]
    assert steps[0] == steps[1] > steps[2] == steps[3] >= 1
    out = json.load(open(tmp_path / "runs" / "iso" / "results.json"))
    for row in out["rows"]:
        per_step = 3 * row["fwd_flops_per_image"] * TINY["BATCH_SIZE"]
        assert abs(row["train_flops"] - 0.002e12) <= per_step / 2 and row["steps"] == row["train_flops"] // per_step
    text = open(tmp_path / "runs" / "iso" / "results.md").read()
    assert "0.002 TFLOP of training compute each" in text and f"| {steps[2]:,} |" in text
    again = LadderRunner()
    assert ladder.main(argv, runner=again) == 0 and again.calls == []
