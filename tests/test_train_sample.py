"""End to end, in subprocesses: train.py for a few steps, resume exactly, then sample.py from the checkpoint."""

import json
import os
import subprocess
import sys

import pytest
import torch
from in_process import exits, one_line
from PIL import Image

import sample
from ddpm.run.hardware import bf16_is_native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "DATASET_SIZE=64",
    "IMAGE_SIZE=16",
    "BATCH_SIZE=16",
    "BASE_CHANNELS=8",
    "NORM_GROUPS=4",
    "ATTENTION_HEADS=2",
    "TEXT_WIDTH=16",
    "TEXT_HEADS=2",
    "TEXT_LAYERS=1",
    "TIME_EMB_DIM=16",
    "TIMESTEPS=50",
    "NUM_INFERENCE_STEPS=3",
    "PROBE_NUM_STEPS=3",
    "SAMPLE_GRID_SIZE=4",
    "EPOCHS=2",
    "WARMUP_STEPS=2",
    "EVAL_EVERY=0",
    "COMPILE=False",
]  # compiling is tested on its own (test_model_text.py)


def sets(*items):
    """``--set`` before each ``KEY=VALUE``: sets(*TINY, "EPOCHS=1") are a command line's overrides, the last wins."""
    return [a for item in items for a in ("--set", item)]


def run(script, *args, env=None):
    cmd = [sys.executable, os.path.join(ROOT, script), *args]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]), **(env or {})},
    )
    return proc


def train(runs, name, *extra):
    args = ["--runs-dir", str(runs), *sets(*TINY), *extra]  # extra after TINY, so that a test's own --set wins
    proc = run("train.py", *args) if "--resume" in extra else run("train.py", "--run", name, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def final_state(runs, name):
    path = sorted((runs / name / "checkpoints").glob("ckpt-*.pt"))[-1]
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    train(runs, "straight", "--max-steps", "6", "--set", "EVAL_EVERY=1")  # the halves below run without it
    return runs


def test_train_writes_grids_checkpoints_events_and_provenance(trained):
    run_dir = trained / "straight"
    assert sorted(p.name for p in (run_dir / "samples").glob("*.png")) == [
        "epoch0001-step0000004.png",
        "epoch0001-step0000006.png",
    ]  # the count of completed epochs
    assert Image.open(next((run_dir / "samples").glob("*.png"))).size[0] > 8
    assert list(run_dir.glob("events.out.tfevents.*"))
    state = final_state(trained, "straight")
    assert state["step"] == 6 and state["unet_args"]["base_channels"] == 8 and state["unet_args"]["image_size"] == 16
    assert state["config"]["BATCH_SIZE"] == 16
    info = json.loads((run_dir / "run.json").read_text())
    assert info["step"] == 6 and info["provenance"]["overrides"]["BATCH_SIZE"] == 16
    assert info["provenance"]["exploratory"] is True and info["provenance"]["adr"]["number"] >= 7
    assert state["config"]["PRECISION"] == "auto"  # config.py's; what this machine ran (ADR 0035) is recorded:
    assert info["provenance"]["precision"] == ("bf16" if bf16_is_native(torch.device("cpu")) else "fp32")
    assert f"({torch.backends.cpu.get_cpu_capability()}), " in info["provenance"]["hardware"]  # `make runs` COMPUTE
    assert not torch.equal(state["unet"]["conv_out.weight"], state["ema_unet"]["conv_out.weight"])
    curve = info["quality_curve"]  # one probe evaluation per epoch and one at the end
    assert [point["step"] for point in curve] == [4, 6] and 0 <= curve[-1]["joint_accuracy"] <= 1
    assert all(0 <= curve[-1][f"{a}_accuracy"] <= 1 for a in ("shape", "color", "background", "size"))
    assert curve[0]["minutes"] <= curve[1]["minutes"]


def test_resume_continues_exactly(trained):
    train(trained, "halves", "--max-steps", "3")
    train(trained, "halves", "--resume", "halves", "--max-steps", "6")
    a, b = final_state(trained, "straight"), final_state(trained, "halves")
    assert a["step"] == b["step"] == 6
    for key in ("unet", "ema_unet", "text_encoder"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"


def test_sample_from_checkpoint_writes_png(trained, tmp_path):
    ckpt = sorted((trained / "straight" / "checkpoints").glob("ckpt-*.pt"))[-1]
    out = tmp_path / "grid.png"
    proc = run(
        "sample.py", "--prompt", "a red circle on a blue background", "--n", "4", "--ckpt", str(ckpt), "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    assert "trained under ADR" in proc.stdout
    image = Image.open(out)
    assert image.size == (2 * 16 + 3 * 2, 2 * 16 + 3 * 2)  # 2×2 grid of 16-pixel images, 2-pixel padding


def test_sample_finds_the_newest_checkpoint_or_says_to_train(trained, tmp_path, capsys, monkeypatch):
    """In this process (sample.py's bad arguments: test_bad_inputs.py; its command line: the test above)."""
    monkeypatch.setenv("PROMPT", "a small star")
    sample.main(["--runs-dir", str(trained), "--n", "1", "--out", str(tmp_path / "a.png")])
    newest = sorted(trained.glob("*/checkpoints/ckpt-*.pt"), key=os.path.getmtime)[-1]
    assert f"checkpoint {newest}: step" in capsys.readouterr().out and (tmp_path / "a.png").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = exits(sample.main, ["--runs-dir", str(empty), "--prompt", "x"], capsys)
    assert code == 2 and "run `make train` first" in one_line(err)


def test_make_sample_passes_the_prompt_verbatim(trained, tmp_path):
    if not os.path.exists(os.path.join(ROOT, ".venv", "bin", "python")):
        pytest.skip("make sample needs the .venv that make test creates")
    prompt = "a \"red\" circle $HOME `echo hi` 'quoted'\nnew line 🎨"
    out = tmp_path / "verbatim.png"
    proc = subprocess.run(
        [
            "make",
            "-s",
            "sample",
            f"PROMPT={prompt}",
            "N=1",
            f"CKPT={sorted((trained / 'straight' / 'checkpoints').glob('*.pt'))[-1]}",
            f"OUT={out}",
            "ARGS=--steps 2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PROMPT"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.exists()
    assert repr(prompt) in proc.stdout  # sample.py echoes the prompt it received
