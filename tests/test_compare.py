"""ddpm.experiments.compare (`make compare`): finished sweeps side by side, on hand-made sweep folders whose
TensorBoard events are written here."""

import json

import pytest
from torch.utils.tensorboard import SummaryWriter

from ddpm.experiments import compare


def write_sweep(root, name, *, batch, curves, base=None, overrides=None, failed=()):
    """A finished one-trial sweep: ``curves[seed]`` = {attribute: [(step, accuracy), ...]} and an eval/fd point."""
    sweep = root / name
    runs = []
    for seed, curve in enumerate(curves):
        run = sweep / f"t0-s{seed}"
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"config": {"BATCH_SIZE": batch}, "step": 100}))
        with SummaryWriter(str(run)) as w:
            for attr, points in curve.items():
                for step, value in points:
                    w.add_scalar(f"eval/{attr}_accuracy", value, step)
            w.add_scalar("eval/fd", 100.0 * (seed + 1), 100)
        runs.append({"run": run.name, "seed": seed, "status": "failed" if seed in failed else "finished"})
    rows = [{"trial": "t0", "overrides": overrides or {}, "runs": runs}]
    (sweep / "results.json").write_text(json.dumps({"name": name, "base": base or {}, "rows": rows}))
    return str(sweep)


def rows_of(text, first_cell):
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith(f"| {first_cell}")
    ]


def test_images_to_threshold_count_the_batch_and_the_seeds_that_got_there(tmp_path, capsys):
    a = write_sweep(
        tmp_path,
        "small",
        batch=32,
        base={"EPOCHS": 5},
        overrides={"MIN_SNR_GAMMA": 0.0},
        curves=[
            {"color": [(50, 0.5), (100, 0.95)], "joint": [(50, 0.0), (100, 0.25)]},
            {"color": [(50, 0.9), (100, 1.0)], "joint": [(50, 0.0), (100, 0.0)]},
        ],
    )
    b = write_sweep(
        tmp_path,
        "large",
        batch=64,
        base={"EPOCHS": 5},
        overrides={"MIN_SNR_GAMMA": 5.0},
        curves=[
            {"color": [(50, 0.95), (100, 0.5)], "joint": [(50, 0.0), (100, 1.0)]},
            {"color": [(50, 0.1), (100, 0.2)], "joint": [(50, 0.0), (100, 0.0)]},
            {"color": [(50, 0.1), (100, 0.2)], "joint": [(50, 0.0), (100, 0.0)]},
        ],
        failed=(2,),
    )
    assert compare.main([a, b]) == 0
    out = capsys.readouterr().out
    (small_final,), (large_final,) = rows_of(out, "small/t0")[:1], rows_of(out, "large/t0")[:1]
    small_to, large_to = rows_of(out, "small/t0")[1], rows_of(out, "large/t0")[1]
    assert small_final[1:5] == ["MIN_SNR_GAMMA=0.0", "32", "100", "2/2"]  # EPOCHS is the same in both: not shown
    assert large_final[1:5] == ["MIN_SNR_GAMMA=5.0", "64", "100", "2/3"]  # the failed seed is left out
    assert small_final[5] == "0.125 (0.000 / 0.125 / 0.250)"  # the final joint accuracy over seeds
    assert large_final[7] == "0.350 (0.200 / 0.350 / 0.500)"  # final colour: the last reading, not the best
    assert small_to[3] == "2.4 (1.6 / 2.4 / 3.2)"  # colour ≥ 0.9 at steps 100 and 50, × 32 images
    assert large_to[3] == "3.2, 1/2"  # step 50 × 64; the other seed never got there
    assert large_to[1] == "6.4, 1/2" and small_to[1] == "not reached, 0/2"  # joint
    assert small_to[2] == "—"  # no shape points were logged at all


def test_a_folder_without_results_is_one_line(tmp_path, capsys):
    assert compare.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no results.json" in err and "make sweep" in err


@pytest.mark.parametrize("threshold", ["0", "1.5"])
def test_a_threshold_outside_0_1_is_refused(tmp_path, threshold):
    with pytest.raises(SystemExit):
        compare.main([str(tmp_path), "--threshold", threshold])


def seeded_sweep(root, name, joints):
    """A one-trial sweep whose seed s ends at joint accuracy ``joints[s]`` (run.json names the seed)."""
    path = write_sweep(root, name, batch=32, curves=[{"joint": [(100, j)]} for j in joints])
    for seed in range(len(joints)):
        record = root / name / f"t0-s{seed}" / "run.json"
        record.write_text(json.dumps({"config": {"BATCH_SIZE": 32, "SEED": seed}, "step": 100}))
    return path


def test_each_pair_gets_a_verdict_paired_by_seed(tmp_path, capsys):
    """A real difference is resolved, no difference is not, and the seeds it would take are named (issue 40)."""
    good = seeded_sweep(tmp_path, "good", [0.95, 0.93, 0.96, 0.94, 0.95])
    worse = seeded_sweep(tmp_path, "worse", [0.90, 0.89, 0.91, 0.88, 0.90])
    twin = seeded_sweep(tmp_path, "twin", [0.91, 0.90, 0.91, 0.88, 0.89])
    assert compare.main([good, worse, twin]) == 0
    out = capsys.readouterr().out
    assert "- good/t0 better: good/t0 − worse/t0 = +0.05 (" in out and "paired over 5 seeds" in out
    line = next(s for s in out.splitlines() if s.startswith("- not resolved: worse/t0 − twin/t0"))
    assert "seeds would resolve a difference of this size" in line
