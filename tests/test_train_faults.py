"""Faults injected into train.py, and what must survive them: nothing recorded is lost, no non-finite state is
stepped on or checkpointed, resume gives what an uninterrupted run gives, and bad input is one line (exit 2).

Faults are injected the way a sweep would: a wrapper process patches one function (the loss weights, the
gradient clipping, the EMA update, torch.save, os.makedirs) and then runs ``train.main``.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from in_process import exits, one_line
from test_train_sample import ROOT, TINY, sets

import train
from ddpm.decisions.replay import replay

PATCH_HEAD = f"import sys, os\nsys.path.insert(0, {ROOT!r})\nimport torch\nimport train\n"


def tiny_argv(runs, *args):
    """train.py's command line for the TINY model under ``runs``, then ``args`` (whose --set wins)."""
    return ["--runs-dir", str(runs), *sets(*TINY), *args]


def train_run(runs, *args, patch=""):
    """Run train.py's main in a fresh process after ``patch`` (Python source); returns the CompletedProcess."""
    argv = tiny_argv(runs, *args)
    code = PATCH_HEAD + textwrap.dedent(patch) + f"\ntrain.main({argv!r})\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def one_line_error(proc, *needles, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr[-2000:])


def checkpoints(run_dir):
    return sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def all_finite(state):
    return all(
        torch.isfinite(t).all()
        for key in ("unet", "ema_unet", "text_encoder", "ema_text_encoder")
        for t in (state[key] or {}).values()
    )


@pytest.fixture(scope="module")
def three_steps_once(tmp_path_factory):
    """A run ``r`` stopped after 3 of its 8 steps, trained once for the tests that resume it."""
    runs = tmp_path_factory.mktemp("three-steps")
    ok(train_run(runs, "--run", "r", "--max-steps", "3"))
    return runs / "r"


@pytest.fixture
def three_steps(three_steps_once, tmp_path):
    """This test's own copy of ``three_steps_once`` at ``tmp_path / "r"``, to resume or spoil."""
    shutil.copytree(three_steps_once, tmp_path / "r")
    return tmp_path / "r"


# ---- item 1: resuming keeps what the run recorded; a finished run says so ---------------------------------
def test_resume_keeps_everything_run_json_recorded(tmp_path, three_steps):
    run_json = tmp_path / "r" / "run.json"
    info = json.loads(run_json.read_text())
    info["quality_curve"] = [{"minutes": 0.1, "step": 3, "joint_accuracy": 0.5}]
    info["eval"] = {"joint_accuracy": 0.5}
    run_json.write_text(json.dumps(info))
    ok(train_run(tmp_path, "--resume", "r", "--max-steps", "6"))
    after = json.loads(run_json.read_text())
    assert after["quality_curve"] == info["quality_curve"] and after["eval"] == info["eval"]
    assert after["started"] == info["started"] and after["step"] == 6 and after["final_loss"] is not None
    for key in ("config_hash", "git_commit", "git_dirty", "overrides", "adr"):
        assert after["provenance"][key] == info["provenance"][key], key
    assert [r["at_step"] for r in after["provenance"]["resumes"]] == [3]


def test_resuming_a_finished_run_says_so_and_changes_nothing(tmp_path, capsys):
    ok(train_run(tmp_path, "--run", "done", "--set", "EPOCHS=1"))
    run_json = tmp_path / "done" / "run.json"
    info = json.loads(run_json.read_text())
    info["quality_curve"] = [{"minutes": 1.0, "step": 4, "joint_accuracy": 1.0}]
    run_json.write_text(json.dumps(info))
    before = {p.name: p.read_bytes() for p in (tmp_path / "done").rglob("*") if p.is_file()}
    train.main(tiny_argv(tmp_path, "--resume", "done", "--set", "EPOCHS=1"))  # returns before any work
    assert "is finished: 4 of 4 steps" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (tmp_path / "done").rglob("*") if p.is_file()} == before


# ---- item 2: an inf gradient is never stepped on nor checkpointed ------------------------------------------
INF_GRADIENT = """
calls = [0]
clip = torch.nn.utils.clip_grad_norm_
def poisoned(params, *a, **k):
    params = list(params)
    calls[0] += 1
    if calls[0] == 3:
        params[0].grad.view(-1)[0] = float("inf")
    return clip(params, *a, **k)
torch.nn.utils.clip_grad_norm_ = poisoned
"""


def test_inf_gradient_skips_the_update_and_no_checkpoint_holds_non_finite_values(tmp_path):
    proc = ok(train_run(tmp_path, "--run", "inf", "--set", "EPOCHS=1", patch=INF_GRADIENT))
    assert "non-finite gradient norm" in proc.stdout + proc.stderr
    paths = checkpoints(tmp_path / "inf")
    assert paths and all(all_finite(load(p)) for p in paths)
    assert load(paths[-1])["step"] == 4  # the skipped batch did not count as a step


# ---- item 4: a skipped last batch still ends its epoch -----------------------------------------------------
NAN_AT_CALL_4 = """
from ddpm.model.diffusion import GaussianDiffusion
weights = GaussianDiffusion.min_snr_weights
calls = [0]
def poisoned(self, t, gamma):
    calls[0] += 1
    w = weights(self, t, gamma)
    return w * float("nan") if calls[0] == 4 else w
GaussianDiffusion.min_snr_weights = poisoned
"""


def test_non_finite_last_batch_still_ends_the_epoch(tmp_path):
    ok(train_run(tmp_path, "--run", "nan", "--set", "EPOCHS=2", patch=NAN_AT_CALL_4))
    run_dir = tmp_path / "nan"
    # 4 batches an epoch; the 4th is skipped, so epoch 1 ends after 3 steps, epoch 2 after 7; step 8 is the last
    assert sorted(p.name for p in (run_dir / "samples").glob("*.png")) == [
        "epoch0001-step0000003.png",
        "epoch0002-step0000007.png",
        "epoch0002-step0000008.png",
    ]
    assert [p.name for p in checkpoints(run_dir)] == [
        "ckpt-epoch0001-step0000003.pt",
        "ckpt-epoch0002-step0000007.pt",
        "ckpt-epoch0002-step0000008.pt",
    ]
    assert all_finite(load(checkpoints(run_dir)[-1]))


# ---- item 3: TensorBoard after a kill and a resume holds what an uninterrupted run holds -------------------
KILL_AT_STEP_5 = """
from ddpm.training import step
ema = step.ema_update
def killed(*a, **k):
    if k["step"] == 5:
        os._exit(9)  # like kill -9: nothing is flushed or closed
    return ema(*a, **k)
step.ema_update = killed
"""


def events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {tag: [(e.step, repr(e.value)) for e in acc.Scalars(tag)] for tag in tags["scalars"]}  # nan == nan
    images = {tag: [e.step for e in acc.Images(tag)] for tag in tags["images"]}
    return scalars, images


def test_tensorboard_events_after_kill_and_resume_match_an_uninterrupted_run(tmp_path):
    ok(train_run(tmp_path, "--run", "whole", "--set", "EPOCHS=2"))
    killed = train_run(tmp_path, "--run", "cut", "--set", "EPOCHS=2", patch=KILL_AT_STEP_5)
    assert killed.returncode == 9 and [p.name for p in checkpoints(tmp_path / "cut")] == [
        "ckpt-epoch0001-step0000004.pt"
    ]
    ok(train_run(tmp_path, "--resume", "cut", "--set", "EPOCHS=2"))
    whole, cut = events(tmp_path / "whole"), events(tmp_path / "cut")
    assert whole[1] == cut[1] and whole[1]["samples"] == [4, 8]
    assert whole[0].keys() == cut[0].keys()
    for tag in whole[0]:
        assert [s for s, _ in whole[0][tag]] == [s for s, _ in cut[0][tag]], tag
        if tag != "train/images_per_s":  # a wall-clock rate
            assert whole[0][tag] == cut[0][tag], tag


# ---- item 5: a resume refuses what would make it another run ----------------------------------------------
def test_resume_refuses_changed_data_and_stamps_allowed_changes(tmp_path, three_steps, capsys):
    run_json = tmp_path / "r" / "run.json"
    before = run_json.read_bytes()
    code, err = exits(train.main, tiny_argv(tmp_path, "--resume", "r", "--set", "DATASET_SIZE=32"), capsys)
    assert code == 2 and "A resume may change: EPOCHS" in one_line(err) and "DATASET_SIZE: run 64, --set 32" in err
    assert run_json.read_bytes() == before and len(checkpoints(tmp_path / "r")) == 1
    ok(train_run(tmp_path, "--resume", "r", "--set", "EPOCHS=3", "--max-steps", "5"))
    info = json.loads(run_json.read_text())
    assert info["config"]["EPOCHS"] == 3 and info["step"] == 5
    assert info["provenance"]["resumes"][-1]["changes"] == {"EPOCHS": [2, 3]}


# ---- items 11 and 14: bad input is one line, exit 2, and no run folder ----------------------------------
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--set", "FOO=1"], ["--set FOO: unknown key"]),
        (["--set", "LEARNING_RATE"], ["--set 'LEARNING_RATE': expected KEY=VALUE"]),
        (["--max-steps", "-1"], ["--max-steps -1: must be ≥ 1"]),
        (["--threads", "0"], ["--threads 0: must be ≥ 1"]),
        (["--set", "BATCH_SIZE=0"], ["BATCH_SIZE = 0 (int): expected an int", "(from --set)"]),
    ],
)
def test_bad_overrides_and_max_steps_are_one_line_errors(tmp_path, capsys, args, expected):
    code, err = exits(train.main, tiny_argv(tmp_path, *args), capsys)  # config.py's own errors: in a subprocess below
    assert code == 2 and all(needle in one_line(err) for needle in expected), err
    assert list(tmp_path.iterdir()) == []


def test_threads_are_set_and_recorded(tmp_path):
    """--threads (what make sweep ARGS="--jobs N" passes): 3 threads even on a 2-core machine, so it cannot pass
    by torch's own default."""
    ok(train_run(tmp_path, "--run", "three", "--threads", "3", "--max-steps", "1"))
    assert json.load(open(tmp_path / "three" / "run.json"))["provenance"]["hardware"].endswith(", 3 threads")


def test_config_py_errors_name_the_file_line_and_adr(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.py").write_text("LEARNING_RATE = 0.001\nBATCH_SIZE = (32\n")
    one_line_error(train_run(tmp_path / "runs", "--config", str(broken / "config.py")), "config.py:2: syntax error")
    bad_value = tmp_path / "value"
    bad_value.mkdir()
    source = re.sub(r"\nLEARNING_RATE = [^ ]+ ", "\nLEARNING_RATE = -4 ", open(os.path.join(ROOT, "config.py")).read())
    (bad_value / "config.py").write_text(source)
    adr = replay(os.path.join(ROOT, "decisions"))[1]["LEARNING_RATE"]  # the newest ADR that set it
    one_line_error(
        train_run(tmp_path / "runs", "--exploratory", "--config", str(bad_value / "config.py")),
        "LEARNING_RATE = -4",
        f"(set by ADR {adr:04d})",
    )
    assert not (tmp_path / "runs").exists()


# ---- item 12: unwritable folders and failed saves say what, where, and that the last checkpoint is intact --
def test_unwritable_runs_folder_is_one_line(tmp_path):
    patch = """
    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", a[0])
    os.makedirs = refuse
    """
    one_line_error(train_run(tmp_path, "--run", "ro", patch=patch), "cannot write the run folder", "--runs-dir")


DISK_FULL_ON_SECOND_SAVE = """
import errno
save = torch.save
calls = [0]
def full(obj, f, *a, **k):
    calls[0] += 1
    if calls[0] == 2:
        f.write(b"PK" * 100)  # half a file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")
    return save(obj, f, *a, **k)
torch.save = full
"""


def test_disk_full_during_a_save_keeps_the_last_checkpoint(tmp_path):
    proc = train_run(tmp_path, "--run", "full", "--set", "EPOCHS=2", patch=DISK_FULL_ON_SECOND_SAVE)
    one_line_error(proc, "ckpt-epoch0001-step0000004.pt, is intact", code=1)
    assert "no space left on device" in proc.stderr.lower()
    folder = tmp_path / "full" / "checkpoints"
    assert [p.name for p in folder.iterdir()] == ["ckpt-epoch0001-step0000004.pt"]  # no temporary left
    assert load(folder / "ckpt-epoch0001-step0000004.pt")["step"] == 4


def test_resume_removes_what_a_killed_save_left(tmp_path, three_steps):
    leftover = tmp_path / "r" / "checkpoints" / ".tmp-abc123.pt"
    leftover.write_bytes(b"half a checkpoint")
    proc = ok(train_run(tmp_path, "--resume", "r", "--max-steps", "4"))
    assert not leftover.exists() and "left by a save that was interrupted" in proc.stdout
