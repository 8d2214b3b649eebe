"""Atomic, self-describing checkpoints, safe loading, and the house boundaries checked on the source."""

import ast
import glob
import os
import warnings

import pytest
import torch

from ddpm.model.text import PromptTokenizer
from ddpm.model.unet import UNet
from ddpm.run import checkpoint as ckpts
from ddpm.run import folder as run_folder
from ddpm.run import hardware
from ddpm.run.hardware import resolve_precision
from ddpm.run.pipeline import Pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_checkpoint(tiny_unet_args, step=1):
    torch.manual_seed(step)
    tokens, mask = PromptTokenizer(context_length=12)(["a red circle on a blue background", ""])
    text_args = dict(
        kind="scratch",
        context_length=12,
        width=16,
        heads=2,
        layers=1,
        open_clip_model="",
        open_clip_pretrained="",
        vocab=tuple(sorted(set(tokens[mask].tolist()))),
    )
    from ddpm.model.text import build_text_encoder

    unet, text = UNet(**tiny_unet_args), build_text_encoder(**text_args)
    for p in unet.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return {
        "format": 1,
        "unet_args": tiny_unet_args,
        "text_args": text_args,
        "diffusion_args": dict(timesteps=20, schedule="cosine", beta_start=1e-4, beta_end=0.02),
        "sampling": dict(
            guidance_scale=2.0,
            num_steps=4,
            sampler="ddim",
            eta=0.0,
            clip_x0=True,
            precision="fp32",
            channels_last=False,
        ),
        "unet": unet.state_dict(),
        "ema_unet": unet.state_dict(),
        "text_encoder": text.state_dict(),
        "ema_text_encoder": text.state_dict(),
        "config": {"SEED": 0},
        "step": step,
    }


def test_round_trip_gives_identical_samples(tmp_path, tiny_unet_args):
    state = make_checkpoint(tiny_unet_args)
    path = str(tmp_path / "run" / "checkpoints" / "ckpt-a.pt")
    ckpts.save_atomic(state, path)
    a = Pipeline.from_checkpoint(path).generate(
        ["a red circle on a blue background"] * 2, guidance_scale=2.0, num_steps=4, seed=5
    )
    b = Pipeline.from_checkpoint(path).generate(
        ["a red circle on a blue background"] * 2, guidance_scale=2.0, num_steps=4, seed=5
    )
    assert a.shape == (2, 3, 8, 8) and torch.equal(a, b)
    c = Pipeline.from_checkpoint(path).generate(
        ["a red circle on a blue background"] * 2, guidance_scale=2.0, num_steps=4, seed=6
    )
    assert not torch.equal(a, c)


@pytest.mark.parametrize("native", [True, False], ids=["bf16-native", "bf16-emulated"])
def test_auto_precision_samples_as_the_device_allows(tmp_path, tiny_unet_args, monkeypatch, native):
    """ADR 0035: a checkpoint that says "auto" samples in bf16 autocast where the device has bf16, else in fp32."""
    monkeypatch.setattr(hardware, "bf16_is_native", lambda device: native)
    state = make_checkpoint(tiny_unet_args)
    state["sampling"]["precision"] = "auto"
    path = str(tmp_path / "ckpt.pt")
    ckpts.save_atomic(state, path)

    def images(precision=None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # explicit bf16 on an "emulated" device warns; tested below
            pipe = Pipeline.from_checkpoint(path, precision=precision)
        out = pipe.generate(["a red circle on a blue background"] * 2, guidance_scale=2.0, num_steps=4, seed=5)
        return pipe.precision, out

    (resolved, auto), (_, fp32), (_, bf16) = images(), images("fp32"), images("bf16")
    assert not torch.equal(fp32, bf16)  # the autocast really changes the computation
    assert resolved == ("bf16" if native else "fp32")
    assert torch.equal(auto, bf16 if native else fp32)


def test_bf16_where_it_is_emulated_warns_and_names_the_way_out(monkeypatch):
    monkeypatch.setattr(hardware, "bf16_is_native", lambda device: False)
    with pytest.warns(UserWarning, match=r"capability .*10x slower in bf16 than in fp32.*--set PRECISION=auto"):
        assert resolve_precision("bf16", "cpu") == "bf16"  # what the user asked for, but not silently
    with pytest.warns(UserWarning, match=r"cuda device reports no native bf16") as record:
        resolve_precision("bf16", "cuda")  # a CPU's measured 10x is not claimed for a card
    assert "10x" not in str(record[0].message) and "capability" not in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("auto", "cpu") == resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="'fp16'.*'auto'"):
        resolve_precision("fp16", "cpu")


def test_the_emulated_bf16_warning_shows_once_per_process(monkeypatch):
    """train.py and its preview pipeline both resolve an explicit bf16: the user reads the warning once."""
    monkeypatch.setattr(hardware, "bf16_is_native", lambda device: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own filter for UserWarning: once per place and text
        resolve_precision("bf16", "cpu")  # as train.py calls it
        resolve_precision("bf16", "cpu")  # as the preview Pipeline does, from another line
    assert len(caught) == 1


def test_failed_rename_leaves_previous_checkpoint_and_no_temp_file(tmp_path, tiny_unet_args, monkeypatch):
    path = str(tmp_path / "ckpt.pt")
    ckpts.save_atomic(make_checkpoint(tiny_unet_args, step=1), path)
    before = open(path, "rb").read()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ckpts.CheckpointError, match="ckpt.pt: no space left on device; the previous checkpoints"):
        ckpts.save_atomic(make_checkpoint(tiny_unet_args, step=2), path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["ckpt.pt"]


@pytest.mark.parametrize("content", [b"", b"\x00garbage\xff" * 10, "truncate"])
def test_unreadable_checkpoints_are_named_and_skipped(tmp_path, tiny_unet_args, content):
    good = str(tmp_path / "good.pt")
    ckpts.save_atomic(make_checkpoint(tiny_unet_args), good)
    bad = str(tmp_path / "bad.pt")
    data = open(good, "rb").read()[:1000] if content == "truncate" else content
    with open(bad, "wb") as f:
        f.write(data)
    with pytest.raises(ckpts.CheckpointError, match="bad.pt: not a readable checkpoint"):
        ckpts.load_checkpoint(bad)
    with pytest.warns(UserWarning, match="skipping"):
        path, state = run_folder.newest_valid([bad, good])
    assert path == good and state["step"] == 1


def test_pickled_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = str(tmp_path / "evil.pt")
    torch.save({"format": 1, "payload": Evil()}, path)
    with pytest.raises(ckpts.CheckpointError):
        ckpts.load_checkpoint(path)
    assert not marker.exists()


def test_not_our_checkpoint_is_named(tmp_path):
    path = str(tmp_path / "other.pt")
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ckpts.CheckpointError, match="missing format"):
        ckpts.load_checkpoint(path)


def test_prune_keeps_newest(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for epoch in range(1, 5):
        (folder / run_folder.checkpoint_name(epoch, epoch * 10)).write_bytes(b"x")
    run_folder.prune(str(tmp_path), keep=2)
    assert [os.path.basename(p) for p in run_folder.run_checkpoints(str(tmp_path))] == [
        run_folder.checkpoint_name(3, 30),
        run_folder.checkpoint_name(4, 40),
    ]


def python_sources():
    return [p for p in glob.glob(os.path.join(ROOT, "**", "*.py"), recursive=True) if "/.venv/" not in p]


def test_nothing_under_ddpm_imports_config():
    for path in glob.glob(os.path.join(ROOT, "ddpm", "*.py")):
        for node in ast.walk(ast.parse(open(path).read())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert "config" not in [n.split(".")[0] for n in names], f"{path} imports config"


def test_every_torch_load_passes_weights_only_true():
    for path in python_sources():
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                kw = {k.arg: k.value for k in node.keywords}
                assert "weights_only" in kw and ast.literal_eval(kw["weights_only"]) is True, f"{path}:{node.lineno}"


def test_a_checkpoint_written_before_the_layout_move_still_samples():
    """tests/data/ckpt-format1-pre-layout.pt was written by train.py at commit 035be70, when ddpm/ was one flat
    package (2 steps of a 4-channel UNet on 8×8 images). It must load and sample with today's code."""
    path = os.path.join(ROOT, "tests", "data", "ckpt-format1-pre-layout.pt")
    pipe = Pipeline.from_checkpoint(path)
    assert pipe.image_size == 8 and pipe.unet.conv_in.out_channels == 4
    images = pipe.generate(["a red circle on a blue background"] * 2, guidance_scale=2.0, num_steps=2, seed=0)
    assert images.shape == (2, 3, 8, 8) and torch.isfinite(images).all() and images.abs().max() <= 1
    again = pipe.generate(["a red circle on a blue background"] * 2, guidance_scale=2.0, num_steps=2, seed=0)
    assert torch.equal(images, again)
