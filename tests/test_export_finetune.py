"""Export to safetensors + JSON, fine-tuning from a base (``--init-from``), and training a share of the UNet.

train.py runs in-process (``train.main``) at the tiny sizes of test_train_sample.py; the base is trained once.
"""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

import train
from ddpm.decisions import runs as runs_table
from ddpm.model.unet import UNet
from ddpm.run.checkpoint import CheckpointError, load_checkpoint
from ddpm.run.export import export, json_path, load_model
from ddpm.run.export import main as export_main
from ddpm.run.finetune import parse_parts, select_trainable, sha256, unet_part_names
from ddpm.run.pipeline import Pipeline
from tests.test_train_sample import TINY, sets


def tiny_train(runs, name, *extra):
    args = ["--runs-dir", str(runs), "--run", name, "--exploratory", *sets(*TINY)]  # ADR numbers of branches may gap
    return train.main(args + list(extra))


def newest(run_dir):
    return sorted((run_dir / "checkpoints").glob("ckpt-*.pt"))[-1]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """(runs folder, base checkpoint path, exported .safetensors path) of a 4-step tiny run."""
    runs = tmp_path_factory.mktemp("runs")
    tiny_train(runs, "base", "--max-steps", "4")
    ckpt = newest(runs / "base")
    out = str(runs / "export" / "base.safetensors")
    assert export_main(["--ckpt", str(ckpt), "--out", out]) == 0
    return runs, ckpt, out


def test_export_samples_the_same_images_as_the_checkpoint(base):
    _, ckpt, out = base
    prompts = ["a small red circle on a blue background", "a big green star on a white background"]
    images = [
        Pipeline.from_checkpoint(str(p)).generate(prompts, guidance_scale=3.0, num_steps=3, seed=7) for p in (ckpt, out)
    ]
    assert torch.equal(images[0], images[1])


def test_export_is_tensors_and_json_only(base):
    _, ckpt, out = base
    with open(out, "rb") as f:
        head = f.read(16)
    assert not head.startswith((b"PK", b"\x80"))  # neither torch's zip nor a pickle stream
    tensors = load_file(out)  # safetensors alone
    with open(json_path(out), encoding="utf-8") as f:
        meta = json.load(f)  # json alone
    state = load_checkpoint(str(ckpt))
    assert {k for k in tensors if k.startswith("unet.")} == {f"unet.{k}" for k in state["ema_unet"]}
    assert all(torch.equal(tensors[f"unet.{k}"], v) for k, v in state["ema_unet"].items())  # EMA weights
    assert all(k.split(".")[0] in ("unet", "text_encoder") for k in tensors)  # no optimizer, no RNG
    assert meta["unet_args"]["base_channels"] == 8 and meta["text_args"]["vocab"]
    assert meta["provenance"]["run"] == "base" and meta["provenance"]["step"] == 4
    assert meta["provenance"]["config_hash"] == state["provenance"]["config_hash"]
    assert load_model(out)["unet_args"] == state["unet_args"]  # tuples come back as tuples


def test_init_from_starts_at_step_0_from_the_base_trains_only_the_chosen_parts_and_resumes(base):
    runs, _, out = base
    base_ema = load_file(out)
    tiny_train(runs, "ft", "--init-from", out, "--max-steps", "2", "--set", "TRAIN_UNET_PARTS=up")
    state = load_checkpoint(str(newest(runs / "ft")))
    up = {k for k in state["unet"] if k.startswith("up.")}
    assert state["step"] == 2
    for key, value in state["unet"].items():  # frozen: still the base's EMA weights, to the bit
        assert torch.equal(value, base_ema[f"unet.{key}"]) == (key not in up), key
    assert not any(torch.equal(state["unet"][k], base_ema[f"unet.{k}"]) for k in up if k.endswith("weight"))
    # a fresh optimizer: two steps on exactly the up-blocks and the text encoder, nothing of the base
    n_text = len(state["text_encoder"])
    assert len(state["optimizer"]["state"]) == len(up) + n_text
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {2}
    info = json.loads((runs / "ft" / "run.json").read_text())
    unet = UNet(**state["unet_args"])
    expected = sum(p.numel() for n, p in unet.named_parameters() if n in up) / sum(p.numel() for p in unet.parameters())
    assert info["unet_trained_share"] == round(expected, 4) and "% UNET" in info["unet_trained"]
    b = info["provenance"]["base"]
    assert b["path"] == os.path.abspath(out) and b["sha256"] == sha256(out) and b["run"] == "base" and b["step"] == 4
    row = runs_table.row(next(e for e in runs_table.load_runs(runs) if e["name"] == "ft"))
    assert (
        row[runs_table.COLUMNS.index("OVERRIDES")].startswith("base base@4 ")
        and "TRAIN_UNET_PARTS" in row[runs_table.COLUMNS.index("OVERRIDES")]
    )
    # its checkpoints are ordinary ones: it resumes, and keeps its base
    train.main(
        ["--runs-dir", str(runs), "--resume", "ft", "--exploratory", "--max-steps", "3"]
        + sets(*TINY, "TRAIN_UNET_PARTS=up")
    )
    info = json.loads((runs / "ft" / "run.json").read_text())
    assert info["step"] == 3 and info["provenance"]["base"]["sha256"] == sha256(out)


def test_a_base_of_another_architecture_is_refused_with_the_keys(base, capsys):
    runs, ckpt, _ = base
    with pytest.raises(SystemExit) as exit_:
        tiny_train(runs, "mismatch", "--init-from", str(ckpt), "--set", "BASE_CHANNELS=16", "--set", "TIMESTEPS=40")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unet_args.base_channels: base 8 vs run 16" in err and "diffusion_args.timesteps: base 50 vs run 40" in err
    assert not (runs / "mismatch" / "checkpoints").exists()


@pytest.mark.parametrize("damage", ["truncate", "no_json", "bad_json", "no_weights"])
def test_a_damaged_export_gives_one_line(base, tmp_path, damage, capsys):
    _, _, out = base
    target = tmp_path / "m.safetensors"
    target.write_bytes(open(out, "rb").read())
    (tmp_path / "m.json").write_text(open(json_path(out)).read())
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:1000])
    elif damage == "no_json":
        os.remove(tmp_path / "m.json")
    elif damage == "bad_json":
        (tmp_path / "m.json").write_text("{not json")
    else:
        os.remove(target)
    with pytest.raises(CheckpointError) as err:
        load_model(str(target))
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)
    with pytest.raises(SystemExit) as exit_:  # and train.py turns it into exit 2, not a traceback
        tiny_train(tmp_path / "runs", "x", "--init-from", str(target))
    assert exit_.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_export_refuses_a_damaged_checkpoint(tmp_path, capsys):
    bad = tmp_path / "ckpt.pt"
    bad.write_bytes(b"not a checkpoint")
    assert export_main(["--ckpt", str(bad)]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "ckpt.safetensors").exists()
    with pytest.raises(ValueError):
        export({}, str(tmp_path / "model.pt"), source=str(bad))


def test_frozen_parameters_do_not_move_and_the_share_is_the_count(tiny_unet_args):
    unet = UNet(**tiny_unet_args)
    trainable, share, text = select_trainable(unet, parse_parts("mid,attention"))
    names = unet_part_names(unet, ("mid", "attention"))
    assert any(".self_attn." in n for n in names if n.startswith("down.")) and all(
        not n.startswith("conv_") for n in names
    )
    total = sum(p.numel() for p in unet.parameters())
    assert share == sum(p.numel() for p in trainable) / total and f"{share:.0%} UNET" in text
    before = {n: p.detach().clone() for n, p in unet.named_parameters()}
    opt = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.1)
    x, ctx = torch.randn(2, 3, 8, 8), torch.randn(2, 4, 16)
    for _ in range(3):
        opt.zero_grad()
        unet(x, torch.tensor([1, 5]), ctx).square().mean().backward()
        opt.step()
    moved = {n for n, p in unet.named_parameters() if not torch.equal(p, before[n])}
    assert moved <= names and len(moved) > 0.5 * len(names)  # zero-initialised outputs hold back some gradients early
    assert parse_parts("all") == ("all",) and select_trainable(unet, ("all",))[1] == 1.0
    for wrong in ("", "all,mid", "middle"):
        with pytest.raises(ValueError, match="TRAIN_UNET_PARTS"):
            parse_parts(wrong)
