"""What a user reaches for beyond the commands (issue 42): progress off a terminal, files others can read, one
HPARAMS row per sweep trial, the nearest names for a mistyped key."""

import math
import os
import re
import stat
import subprocess

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_train_faults import checkpoints, ok, train_run
from test_train_sample import ROOT

from ddpm.files import write_json
from ddpm.run.checkpoint import load_checkpoint
from ddpm.run.export import export
from ddpm.run.settings import parse_overrides

OLD_CKPT = os.path.join(ROOT, "tests", "data", "ckpt-format1-pre-layout.pt")


def test_training_off_a_terminal_prints_progress_lines(tmp_path):
    proc = ok(train_run(tmp_path, "--run", "log", "--set", "EPOCHS=2"))  # stdout is a pipe here, as in `> log`
    lines = re.findall(
        r"^step (\d+)/8 \(\d+%\) loss \d\.\d{4} lr \S+ \d+ img/s, about \d+ min of steps left$", proc.stdout, re.M
    )
    assert lines and lines[-1] == "8", proc.stdout  # the first window and the last step at least


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_files_get_the_permissions_the_umask_gives(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        write_json({"a": 1}, str(tmp_path / "run.json"))
        export(load_checkpoint(OLD_CKPT), str(tmp_path / "model.safetensors"), source=OLD_CKPT)
    finally:
        os.umask(old)
    for name in ("run.json", "model.safetensors", "model.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == mode, name


def test_a_training_run_under_umask_022_is_readable_by_others(tmp_path):
    code = "import os; os.umask(0o022)\n"
    ok(train_run(tmp_path, "--run", "shared", "--set", "EPOCHS=1", patch=code))
    for path in [*checkpoints(tmp_path / "shared"), tmp_path / "shared" / "run.json"]:
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o044 == 0o044, path


def test_a_sweep_trial_appears_once_in_hparams(tmp_path):
    ok(train_run(tmp_path, "--run", "t0-s0", "--set", "EPOCHS=1", "--tag", "sweep=x", "--tag", "trial=t0"))
    acc = EventAccumulator(str(tmp_path / "t0-s0"))
    acc.Reload()
    assert "_hparams_/session_start_info" not in acc.Tags()["tensors"]  # the sweep's .hparams/ holds its row


def test_a_mistyped_key_suggests_the_nearest_names():
    with pytest.raises(ValueError, match="LEARNIN_RATE: unknown key; did you mean LEARNING_RATE"):
        parse_overrides(["LEARNIN_RATE=1"])
    with pytest.raises(ValueError, match="config.py lists the known keys"):
        parse_overrides(["ZZZ=1"])


def test_make_tensorboard_takes_a_port_and_a_host():
    if not os.path.exists(os.path.join(ROOT, ".venv", "bin", "python")):
        pytest.skip("make's targets need the .venv that make test creates")
    run = ["make", "-s", "tensorboard", "PY=echo"]  # echo in place of python: the command line it would get
    given = subprocess.run([*run, "PORT=7007", "HOST=0.0.0.0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert given.stdout.split()[-2:] == ["--port=7007", "--host=0.0.0.0"], given.stdout + given.stderr
    default = subprocess.run(run, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert default.stdout.split()[-2:] == ["--port=6006", "--host=localhost"], default.stdout + default.stderr


def test_a_runs_length_in_steps_whatever_the_dataset(tmp_path):
    """TRAIN_STEPS (ADR 0056): the run ends there and its cosine schedule with it, not at EPOCHS epochs."""
    proc = ok(
        train_run(
            tmp_path,
            "--run",
            "six",
            "--set",
            "TRAIN_STEPS=6",
            "--set",
            "EPOCHS=100",
            "--set",
            "LR_SCHEDULE='cosine'",
            "--set",
            "WARMUP_STEPS=0",
        )
    )
    state = load_checkpoint(str(checkpoints(tmp_path / "six")[-1]))
    assert state["step"] == 6 and "done: 6 steps" in proc.stdout
    group = state["optimizer"]["param_groups"][0]
    assert group["lr"] == pytest.approx(group["base_lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 6))))
