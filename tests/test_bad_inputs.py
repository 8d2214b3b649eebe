"""Bad inputs and injected faults at the sampling and checkpoint boundaries (issue 8, items 6-10, 12, 13).

Each case must end in one line that names the thing and the way out (exit code 2 for bad input), with no
traceback, before anything is sampled, and with nothing on disk worse than before. The checkpoint under
test is tests/data/ckpt-format1-pre-layout.pt (a real 2-step checkpoint of a 4-channel UNet on 8×8 images)
or a copy of it made wrong on purpose; nothing here trains.
"""

import errno
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import traceback

import pytest
import torch
from in_process import exits, one_line

import sample
from ddpm.files import TMP_PREFIX
from ddpm.measure import evaluate as ev
from ddpm.run import checkpoint as ckpts
from ddpm.run import folder as run_folder
from ddpm.run.pipeline import Pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "data", "ckpt-format1-pre-layout.pt")
NAME = "ckpt-epoch0001-step0000002.pt"
CALLED = []  # what a malicious pickle would have run


def _mark():
    CALLED.append("ran")


class RunsCode:
    """Pickles to a call of ``func``: what a malicious checkpoint would carry."""

    def __init__(self, func):
        self.func = func

    def __reduce__(self):
        return (self.func, ())


def copy_fixture(run_dir, name=NAME):
    path = os.path.join(run_dir, "checkpoints", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copyfile(FIXTURE, path)
    return path


def bad_file(folder, kind):
    """A file at ``folder/<kind>.pt`` that no checkpoint loader should accept (``missing`` is not written)."""
    path = os.path.join(folder, f"{kind}.pt")
    data = open(FIXTURE, "rb").read()
    if kind == "truncated":
        open(path, "wb").write(data[: len(data) // 2])
    elif kind == "empty":
        open(path, "wb").close()
    elif kind == "random":
        open(path, "wb").write(random.Random(8).randbytes(4096))  # fixed: some random starts read as a pickle
    elif kind in ("malicious", "malicious-os"):
        func = os.getcwd if kind == "malicious-os" else _mark
        torch.save({"format": 1, "unet_args": RunsCode(func)}, path)
    return path


def inconsistent(folder, change):
    """A copy of the fixture whose recorded constructor arguments contradict its weights."""
    ckpt = torch.load(FIXTURE, map_location="cpu", weights_only=True)
    if change == "unet-width":
        ckpt["unet_args"] = {**ckpt["unet_args"], "base_channels": 8, "norm_groups": 4}
    elif change == "unet-unknown-arg":
        ckpt["unet_args"] = {**ckpt["unet_args"], "depth": 3}
    elif change == "text-width":
        ckpt["text_args"] = {**ckpt["text_args"], "width": 16}
    path = os.path.join(folder, f"{change}.pt")
    torch.save(ckpt, path)
    return path


@pytest.fixture
def no_sampling(monkeypatch):
    """Bad input must be refused before any image is sampled or any probe trained."""

    def refuse(*args, **kwargs):
        raise AssertionError("sampling started before the input was checked")

    monkeypatch.setattr(Pipeline, "generate", refuse)
    monkeypatch.setattr(ev, "load_or_train_probe", refuse)


def sample_argv(ckpt, *extra):
    return ["--prompt", "a red circle on a blue background", "--n", "1", "--ckpt", ckpt, *extra]


# ---- item 6: make eval CKPT= an unusable file; make eval falls back past a corrupt newest checkpoint ------------
@pytest.mark.parametrize("kind", ["truncated", "empty", "random", "malicious", "missing"])
def test_eval_names_an_unusable_checkpoint_in_one_line(tmp_path, capsys, no_sampling, kind):
    path = bad_file(str(tmp_path), kind)
    code, err = exits(ev.main, ["--ckpt", path], capsys)
    line = one_line(err)
    assert code == 2 and path in line and "use another" in line, line
    assert sorted(os.listdir(tmp_path)) == ([] if kind == "missing" else [os.path.basename(path)])  # no eval/ folder


def test_eval_without_ckpt_skips_a_corrupt_newest_checkpoint(tmp_path, capsys, no_sampling):
    runs = tmp_path / "runs"
    good = copy_fixture(str(runs / "older"))
    (runs / "newer" / "checkpoints").mkdir(parents=True)
    os.rename(bad_file(str(runs / "newer" / "checkpoints"), "truncated"), str(runs / "newer" / "checkpoints" / NAME))
    os.utime(good, (1, 1))  # the corrupt one is the newest by modification time
    log = []
    with pytest.warns(UserWarning, match=r"skipping .*newer.*truncated"):
        with pytest.raises(SystemExit) as stop:  # a STEPS beyond the checkpoint's TIMESTEPS stops it after the choice
            ev.main(["--runs", str(runs), "--steps", "999999"], log=log.append)
    assert stop.value.code == 2 and "STEPS=999999" in one_line(capsys.readouterr().err)
    assert f"checkpoint: {good}" in log


# ---- item 7: recorded constructor arguments that contradict the weights -------------------------------------
@pytest.mark.parametrize("change", ["unet-width", "unet-unknown-arg", "text-width"])
def test_inconsistent_checkpoint_is_named_in_sample_and_eval(tmp_path, capsys, no_sampling, change):
    path = inconsistent(str(tmp_path), change)
    with pytest.raises(ckpts.CheckpointError) as err:
        Pipeline.from_checkpoint(path)
    message = str(err.value)
    assert path in message and "inconsistent" in message and "use another" in message and "\n" not in message
    assert ("text_args" if change.startswith("text") else "unet_args") in message
    if change == "unet-width":
        assert "conv_in.weight" in message and "(4, 3, 3, 3)" in message and "(8, 3, 3, 3)" in message
    out = tmp_path / "out.png"
    for main, argv in ((sample.main, sample_argv(path, "--out", str(out))), (ev.main, ["--ckpt", path])):
        code, stderr = exits(main, argv, capsys)
        assert code == 2 and "inconsistent" in one_line(stderr) and "size mismatch" not in stderr
    assert not out.exists() and not (tmp_path / "eval").exists()


# ---- item 8: seeds are range-checked with the other sampling parameters --------------------------------------
@pytest.mark.parametrize("seed", ["99999999999999999999", str(2**64), "-1"])
def test_sample_refuses_a_seed_out_of_range(tmp_path, capsys, no_sampling, seed):
    out = tmp_path / "out.png"
    code, err = exits(sample.main, sample_argv(FIXTURE, "--seed", seed, "--out", str(out)), capsys)
    line = one_line(err)
    assert code == 2 and f"SEED={seed}" in line and str(2**64 - 1) in line, line
    assert not out.exists()


# ---- item 9: the output path is checked before sampling ------------------------------------------------------
@pytest.mark.parametrize("case", ["proc", "folder", "no-extension", "gif", "parent-is-a-file"])
def test_sample_checks_out_before_sampling(tmp_path, capsys, no_sampling, case):
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("x")
    out, expected = {
        "proc": ("/proc/x.png", "/proc"),
        "folder": (str(tmp_path / "a-folder"), "is a folder"),
        "no-extension": (str(tmp_path / "grid"), ".png"),
        "gif": (str(tmp_path / "grid.gif"), ".png"),
        "parent-is-a-file": (str(tmp_path / "a-file" / "grid.png"), "not a folder"),
    }[case]
    code, err = exits(sample.main, sample_argv(FIXTURE, "--out", out), capsys)
    line = one_line(err)
    assert code == 2 and out in line and expected in line, line
    assert sorted(os.listdir(tmp_path)) == ["a-file", "a-folder"] and not os.listdir(tmp_path / "a-folder")


def test_sample_that_cannot_write_its_image_leaves_nothing(tmp_path, capsys, monkeypatch):
    def full_disk(images, fp, **kwargs):
        open(fp, "wb").write(b"half a png")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sample.vutils, "save_image", full_disk)
    code, err = exits(sample.main, sample_argv(FIXTURE, "--out", str(tmp_path / "grid.png")), capsys)
    assert code == 1 and "no space left on device" in one_line(err) and not os.listdir(tmp_path)


# ---- item 10: eval's parameters are validated like sample's, by the same function ----------------------------
@pytest.mark.parametrize(
    "args, expected",
    [
        (["--guidance", "nan"], "GUIDANCE=nan"),
        (["--guidance", "inf"], "GUIDANCE=inf"),
        (["--guidance", "-1"], "GUIDANCE=-1"),
        (["--steps", "0"], "STEPS=0"),
        (["--steps", "999999"], "STEPS=999999"),
        (["--n", "0"], "N=0"),
        (["--seed", "-1"], "SEED=-1"),
        (["--seed", str(2**64)], f"SEED={2**64}"),
        (["--sweep", "1,nan"], "SWEEP"),
        (["--sweep", "2,-3"], "SWEEP"),
        (
            ["--sampler", "dpmpp2m", "--steps", "20"],
            "STEPS=20: must be in [1, 19]",
        ),  # the fixture's 20 TIMESTEPS less t=0
    ],
)
def test_eval_validates_its_parameters_like_sample(tmp_path, capsys, no_sampling, args, expected):
    code, err = exits(ev.main, ["--ckpt", FIXTURE, "--out", str(tmp_path / "eval"), *args], capsys)
    line = one_line(err)
    assert code == 2 and expected in line, line
    assert not os.listdir(tmp_path)
    if expected != "SWEEP":  # sample says the same about the same value: one shared check
        _, sample_err = exits(sample.main, sample_argv(FIXTURE, "--out", str(tmp_path / "x.png"), *args), capsys)
        assert line.split(": ", 1)[1] == one_line(sample_err).split(": ", 1)[1]


def test_eval_checks_its_out_folder_before_sampling(tmp_path, capsys, no_sampling):
    (tmp_path / "a-file").write_text("x")
    code, err = exits(ev.main, ["--ckpt", FIXTURE, "--out", str(tmp_path / "a-file")], capsys)
    assert code == 2 and "a-file" in one_line(err) and "not a folder" in one_line(err)


# ---- item 13: a refused malicious checkpoint, told apart from a corrupt one ----------------------------------
@pytest.mark.parametrize("kind", ["malicious", "malicious-os"])
def test_malicious_checkpoint_is_refused_for_safety_without_torch_advice(tmp_path, kind):
    path = bad_file(str(tmp_path), kind)
    with pytest.raises(ckpts.CheckpointError) as err:
        ckpts.load_checkpoint(path)
    message = str(err.value)
    assert path in message and "not plain tensors" in message and "refused for safety" in message
    assert "weights_only" not in message and "Re-running" not in message and "\n" not in message
    assert ("getcwd" if kind == "malicious-os" else "_mark") in message  # what it asked to run
    assert CALLED == []


@pytest.mark.parametrize("kind", ["truncated", "empty", "random"])
def test_corrupt_checkpoint_is_not_called_malicious(tmp_path, kind):
    path = bad_file(str(tmp_path), kind)
    with pytest.raises(ckpts.CheckpointError) as err:
        ckpts.load_checkpoint(path)
    message = str(err.value)
    assert path in message and "truncated or corrupt" in message and "refused" not in message
    assert "Re-running" not in message and "\n" not in message


# ---- item 12, checkpoint side: a failing save is one error naming the path; leftovers are cleaned -----------
def saved_state():
    return {"format": 1, "weights": torch.arange(4096.0), "step": 2}


@pytest.fixture
def previous(tmp_path):
    """A checkpoints folder holding one good checkpoint; returns (folder, its bytes)."""
    folder = tmp_path / "run" / "checkpoints"
    ckpts.save_atomic({"format": 1, "weights": torch.zeros(4096), "step": 1}, str(folder / NAME))
    return folder, (folder / NAME).read_bytes()


def failed_save(folder, before, match):
    target = str(folder / run_folder.checkpoint_name(1, 4))
    with pytest.raises(ckpts.CheckpointError) as err:
        ckpts.save_atomic(saved_state(), target)
    message = str(err.value)
    assert target in message and match in message and "untouched" in message and "\n" not in message
    assert "".join(traceback.format_exception(err.value)).count("Traceback") == 1  # one error, not a chain
    assert sorted(os.listdir(folder)) == [NAME] and (folder / NAME).read_bytes() == before


class FullDisk(io.FileIO):
    """A file on a disk that fills up after 4 KiB."""

    def write(self, data):
        if self.tell() + memoryview(data).nbytes > 4096:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_disk_full_during_save(previous, monkeypatch):
    import builtins

    real_open = builtins.open
    monkeypatch.setattr(
        builtins,
        "open",
        lambda path, mode="r", *a, **k: (
            FullDisk(path, mode.replace("b", ""))
            if mode == "wb" and os.path.basename(str(path)).startswith(TMP_PREFIX)
            else real_open(path, mode, *a, **k)
        ),
    )
    failed_save(*previous, match="no space left on device")


def test_save_that_writes_half_a_file_then_fails(previous, monkeypatch):
    real_save = torch.save

    def half_save(obj, f):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", half_save)
    failed_save(*previous, match="PytorchStreamWriter failed")


def test_interrupted_save_removes_its_temporary_and_stays_an_interrupt(previous, monkeypatch):
    folder, before = previous

    def interrupted(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ckpts.save_atomic(saved_state(), str(folder / "next.pt"))
    assert sorted(os.listdir(folder)) == [NAME] and (folder / NAME).read_bytes() == before


def test_failing_rename_names_the_path(previous, monkeypatch):
    def broken_replace(src, dst):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "replace", broken_replace)
    failed_save(*previous, match="input/output error")


def test_read_only_file_system(previous, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    failed_save(*previous, match="read-only file system")


def test_read_only_folder(previous):
    folder, before = previous
    os.chmod(folder, 0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("chmod does not stop this user from writing (running as root)")
        failed_save(folder, before, match="permission denied")
    finally:
        os.chmod(folder, 0o755)


def test_leftover_temporaries_are_removed_and_never_listed(previous):
    folder, before = previous
    leftover = folder / f"{TMP_PREFIX}abc123.pt"  # what a save killed mid-write leaves
    leftover.write_bytes(b"half")
    run_dir = str(folder.parent)
    assert run_folder.run_checkpoints(run_dir) == [str(folder / NAME)]
    assert run_folder.all_checkpoints(str(folder.parent.parent)) == [str(folder / NAME)]
    assert run_folder.remove_temporaries(run_dir) == [str(leftover)]
    assert sorted(os.listdir(folder)) == [NAME] and (folder / NAME).read_bytes() == before
    assert run_folder.remove_temporaries(run_dir) == [] and run_folder.remove_temporaries(str(folder / "nowhere")) == []


# ---- the same, end to end: the command lines, in a subprocess ---------------------------------------------
@pytest.mark.parametrize(
    "command, expected",
    [
        (
            [os.path.join(ROOT, "sample.py"), "--prompt", "x", "--ckpt", FIXTURE, "--seed", "99999999999999999999"],
            "SEED=99999999999999999999",
        ),
        (["-m", "ddpm.measure.evaluate", "--ckpt", "truncated.pt"], "truncated or corrupt"),
    ],
)
def test_command_line_ends_in_one_line_with_exit_code_2(tmp_path, command, expected):
    bad_file(str(tmp_path), "truncated")
    proc = subprocess.run(
        [sys.executable, *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])},
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert expected in proc.stderr.strip().splitlines()[-1]
    assert sorted(os.listdir(tmp_path)) == ["truncated.pt"]
