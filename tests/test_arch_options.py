"""The architecture options of issue 10: LINEAR_BIAS (ADR 0029), NORM (ADR 0030), TRAIN_TEXT_TOWER (ADR 0031),
POOLED_TEXT (ADR 0032) and SCALE_SHIFT (ADR 0034).

Each option changes the model or its update, is recorded in the checkpoint, and comes back the same at sample
time; the defaults are today's model, and checkpoints written before the options existed still load. train.py
runs in-process at the tiny sizes of test_train_sample.py; the pretrained open_clip tower is a tiny randomly
initialised one saved to a local file (as in test_model_text.py), so nothing is downloaded.
"""

import json
import os
import shutil
import warnings

import open_clip
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sample
import train
from ddpm.model.text import PromptTokenizer, build_text_encoder
from ddpm.model.unet import GroupRMSNorm, ResBlock, UNet, pooled
from ddpm.run import optim, settings
from ddpm.run.checkpoint import load_checkpoint
from ddpm.run.export import export, json_path, load_model
from ddpm.run.pipeline import Pipeline
from tests.test_train_sample import TINY, sets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = ["a small red circle on a blue background", "a big green star on a white background"]


def inputs(args, batch=2, seed=0):
    """x (B, 3, H, W), t (B,), context (B, 5, D), mask (B, 5) for a UNet built from ``args``."""
    g = torch.Generator().manual_seed(seed)
    size, dim = args["image_size"], args["context_dim"]
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])[:batch]
    return (
        torch.randn(batch, 3, size, size, generator=g),
        torch.tensor([3, 17])[:batch],
        torch.randn(batch, 5, dim, generator=g),
        mask,
    )


def randomised(net, seed=1):
    """``net`` with every parameter drawn from N(0, 0.1²): at initialisation the output conv is zero."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(std=0.1)
    return net.eval()


def linear_biases(net):
    return {f"{name}.bias" for name, m in net.named_modules() if isinstance(m, nn.Linear) and m.bias is not None}


def tiny_train(runs, name, *extra):
    args = [
        "--runs-dir",
        str(runs),
        "--exploratory",  # ADR numbers of parallel branches may gap
        *sets(*TINY, "SAMPLE_GRID_SIZE=2", "NUM_INFERENCE_STEPS=2"),
    ]
    return train.main(args + (["--run", name] if "--resume" not in extra else []) + list(extra))


def newest(run_dir):
    return max((run_dir / "checkpoints").glob("ckpt-*.pt"))  # names sort by epoch, then step


# ---- LINEAR_BIAS (ADR 0029) ---------------------------------------------------------------------------------
def test_no_linear_bias_removes_exactly_the_linear_biases(tiny_unet_args):
    torch.manual_seed(0)
    with_bias = randomised(UNet(**tiny_unet_args))
    without = UNet(**tiny_unet_args, linear_bias=False).eval()
    dropped = linear_biases(with_bias)
    assert not linear_biases(without)
    assert {n.rsplit(".", 2)[-2] for n in dropped} >= {"temb", "out", "0", "2"}  # time projections, attention, ff, MLP
    assert "time_mlp.0.bias" in dropped and "time_mlp.2.bias" in dropped
    assert set(with_bias.state_dict()) - set(without.state_dict()) == dropped
    assert sum(p.numel() for p in with_bias.parameters()) - sum(p.numel() for p in without.parameters()) == sum(
        with_bias.state_dict()[n].numel() for n in dropped
    )
    convs = [n for n, m in without.named_modules() if isinstance(m, nn.Conv2d)]
    assert all(without.get_submodule(n).bias is not None for n in convs)  # conv biases stay (ADR 0029)

    # The same weights without the biases: a different function, and the biased one with its biases at zero.
    without.load_state_dict({k: v for k, v in with_bias.state_dict().items() if k not in dropped})
    x = inputs(tiny_unet_args)
    with torch.no_grad():
        assert not torch.allclose(with_bias(*x), without(*x), atol=1e-4)
        for n in dropped:
            with_bias.get_submodule(n.rsplit(".", 1)[0]).bias.zero_()
        assert torch.allclose(with_bias(*x), without(*x), atol=1e-6)


def test_the_defaults_build_todays_unet(tiny_unet_args):
    torch.manual_seed(0)
    today = UNet(**tiny_unet_args).state_dict()
    torch.manual_seed(0)
    spelled = UNet(**tiny_unet_args, linear_bias=True, norm="group", pooled_text=False, scale_shift=False).state_dict()
    assert list(today) == list(spelled) and all(torch.equal(today[k], spelled[k]) for k in today)
    net = UNet(**tiny_unet_args)
    assert any(isinstance(m, nn.GroupNorm) for m in net.modules()) and any(
        isinstance(m, nn.LayerNorm) for m in net.modules()
    )


# ---- NORM (ADR 0030) ------------------------------------------------------------------------------------------
def test_rms_replaces_every_group_and_layer_norm_and_changes_the_output(tiny_unet_args):
    torch.manual_seed(0)
    group = randomised(UNet(**tiny_unet_args))
    rms = UNet(**tiny_unet_args, norm="rms").eval()

    def kinds(net, cls):
        return [n for n, m in net.named_modules() if type(m) is cls]

    assert not kinds(rms, nn.GroupNorm) and not kinds(rms, nn.LayerNorm)
    assert kinds(rms, GroupRMSNorm) == kinds(group, nn.GroupNorm)  # the same places, feature maps
    assert [n for n, m in rms.named_modules() if isinstance(m, nn.RMSNorm)] == kinds(group, nn.LayerNorm)  # tokens
    # Every weight carries over but the norms' shifts β, which RMSNorm does not have (eq. 4: a gain only).
    missing, unexpected = rms.load_state_dict(group.state_dict(), strict=False)
    assert (
        not missing
        and unexpected
        and all(
            k.rsplit(".", 1)[0] in kinds(group, nn.GroupNorm) + kinds(group, nn.LayerNorm) and k.endswith(".bias")
            for k in unexpected
        )
    )
    x = inputs(tiny_unet_args)
    with torch.no_grad():
        a, b = group(*x), rms(*x)
    assert a.shape == b.shape and torch.isfinite(b).all() and not torch.allclose(a, b, atol=1e-3)


def test_group_rms_norm_is_rmsnorm_over_each_group():
    """Zhang & Sennrich (2019), eq. 4, with one group of C/G channels × H·W positions as the vector a."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 3, 3) * 4 + 1
    norm = GroupRMSNorm(4, 8)
    y = norm(x)
    rms = y.unflatten(1, (4, 2)).pow(2).mean(dim=(2, 3, 4)).sqrt()  # (B, G): 1 with the gain at its init
    assert torch.allclose(rms, torch.ones_like(rms), atol=1e-4)
    assert torch.allclose(norm(3.0 * x), y, atol=1e-5)  # re-scaling invariant
    assert not torch.allclose(norm(x + 1.0), y, atol=1e-2)  # not re-centering invariant, unlike GroupNorm:
    assert torch.allclose(F.group_norm(x + 1.0, 4), F.group_norm(x, 4), atol=1e-4)
    one_group = GroupRMSNorm(1, 8)
    with torch.no_grad():
        one_group.weight.copy_(torch.linspace(0.5, 2, 8))
    expected = F.rms_norm(x, (8, 3, 3), eps=1e-5) * one_group.weight[:, None, None]
    assert torch.allclose(one_group(x), expected, atol=1e-5)
    last = norm(x.contiguous(memory_format=torch.channels_last))
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.allclose(last, y, atol=1e-6)


def test_rms_unet_runs_in_bf16_autocast_without_warnings(tiny_unet_args):
    net = randomised(UNet(**tiny_unet_args, norm="rms", linear_bias=False))
    x, t, ctx, mask = inputs(tiny_unet_args)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("error")  # torch's RMSNorm warns on a bf16 input with a float32 gain
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x.contiguous(memory_format=torch.channels_last), t, ctx, mask)
        ref = net(x, t, ctx, mask)
    assert torch.allclose(out.float(), ref, atol=0.1, rtol=0.05)


# ---- POOLED_TEXT (ADR 0032) -----------------------------------------------------------------------------------
def test_pooled_is_the_mean_over_the_unmasked_tokens():
    torch.manual_seed(0)
    ctx = torch.randn(2, 5, 4)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    out = pooled(ctx, mask)
    assert torch.allclose(out[0], ctx[0].mean(0)) and torch.allclose(out[1], ctx[1, :3].mean(0))
    assert torch.equal(pooled(ctx.masked_fill(~mask[..., None], 1e6), mask), out)  # padding does not enter it
    assert torch.allclose(pooled(ctx), ctx.mean(1))


def time_inputs_of_the_blocks(net, x):
    """What every residual block's time projection receives, (blocks, B, 4·TIME_EMB_DIM), for inputs ``x``."""
    seen = []
    hooks = [
        m.temb.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
        for m in net.modules()
        if isinstance(m, ResBlock)
    ]
    with torch.no_grad():
        net(*x)
    for h in hooks:
        h.remove()
    return torch.stack(seen)


def test_pooled_text_brings_the_prompt_to_every_residual_block(tiny_unet_args):
    torch.manual_seed(0)
    plain = randomised(UNet(**tiny_unet_args))
    with_path = UNet(**tiny_unet_args, pooled_text=True).eval()
    assert set(with_path.state_dict()) - set(plain.state_dict()) == {"text_to_time.weight", "text_to_time.bias"}
    with_path.load_state_dict(
        {**plain.state_dict(), **{k: v for k, v in with_path.state_dict().items() if k.startswith("text_to_time")}}
    )
    x, t, ctx, mask = inputs(tiny_unet_args)
    other = (x, t, ctx.flip(0), mask.flip(0))  # the same images and timesteps, the prompts swapped
    # Without the path the residual blocks see only the timestep; with it, the prompt too.
    assert torch.equal(time_inputs_of_the_blocks(plain, (x, t, ctx, mask)), time_inputs_of_the_blocks(plain, other))
    assert not torch.allclose(
        time_inputs_of_the_blocks(with_path, (x, t, ctx, mask)), time_inputs_of_the_blocks(with_path, other), atol=1e-4
    )
    with torch.no_grad():
        assert not torch.allclose(with_path(x, t, ctx, mask), plain(x, t, ctx, mask), atol=1e-4)
        with_path.text_to_time.weight.zero_()
        with_path.text_to_time.bias.zero_()
        assert torch.allclose(with_path(x, t, ctx, mask), plain(x, t, ctx, mask), atol=1e-6)  # the only change
    with_path.text_to_time.weight.data.normal_(std=0.1)
    with_path.train()(x, t, ctx, mask).square().mean().backward()
    assert with_path.text_to_time.weight.grad.abs().sum() > 0  # it is trained


# ---- SCALE_SHIFT (ADR 0034) -----------------------------------------------------------------------------------
def residual_branch(block, x, temb):
    """ResBlock(x) − skip(x): what the block adds to its input."""
    with torch.no_grad():
        return block(x, temb) - block.skip(x)


def test_scale_shift_can_switch_a_blocks_channels_off_where_a_bias_cannot():
    torch.manual_seed(0)
    args = dict(temb_dim=8, groups=2, dropout=0.0, norm="group", linear_bias=True)
    plain, adagn = ResBlock(4, 6, **args).eval(), ResBlock(4, 6, **args, scale_shift=True).eval()
    assert adagn.temb.out_features == 2 * plain.temb.out_features  # a scale and a shift per channel
    for block in (plain, adagn):
        nn.init.normal_(block.conv2.weight, std=0.3)  # at initialisation the branch is zero in both
    x, other, temb = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), torch.randn(2, 8)
    with torch.no_grad():
        adagn.temb.weight.zero_()
        adagn.temb.bias.zero_()
        adagn.temb.bias[:6] = -1.0  # scale = −1: norm(h)·(1 + s) + b = b, whatever the input
        adagn.temb.bias[6:] = torch.linspace(-1, 1, 6)
    assert torch.allclose(residual_branch(adagn, x, temb), residual_branch(adagn, other, temb), atol=1e-6)
    assert residual_branch(adagn, x, temb).abs().max() > 1e-2  # what remains is the shift's, through SiLU and conv
    # The bias path adds the embedding before the norm, so it cannot silence the input.
    assert not torch.allclose(residual_branch(plain, x, temb), residual_branch(plain, other, temb), atol=1e-3)
    with torch.no_grad():
        adagn.temb.bias.zero_()  # scale 0, shift 0: the block's own norm → SiLU → conv
        plain.load_state_dict({**adagn.state_dict(), "temb.weight": torch.zeros(6, 8), "temb.bias": torch.zeros(6)})
    assert torch.allclose(residual_branch(adagn, x, temb), residual_branch(plain, x, temb), atol=1e-6)


def test_scale_shift_brings_the_timestep_and_the_pooled_prompt_in_as_scales(tiny_unet_args):
    torch.manual_seed(0)
    net = randomised(UNet(**tiny_unet_args, scale_shift=True, pooled_text=True))
    x, t, ctx, mask = inputs(tiny_unet_args)
    with torch.no_grad():
        out = net(x, t, ctx, mask)
        assert not torch.allclose(out, net(x, t + 100, ctx, mask), atol=1e-4)
        assert not torch.allclose(out, net(x, t, ctx.flip(0), mask.flip(0)), atol=1e-4)
    net.train()(x, t, ctx, mask).square().mean().backward()
    for block in (m for m in net.modules() if isinstance(m, ResBlock)):
        c = block.temb.out_features // 2
        assert block.temb.weight.grad[:c].abs().sum() > 0 and block.temb.weight.grad[c:].abs().sum() > 0


# ---- settings: validation and constructor arguments ----------------------------------------------------------
def config():
    import config as module

    return settings.config_from_module(module)


@pytest.mark.parametrize(
    "key, value, allowed",
    [
        ("NORM", "layer", "one of 'group', 'rms'"),
        ("LINEAR_BIAS", 0, "True or False"),
        ("POOLED_TEXT", 1, "True or False"),
        ("SCALE_SHIFT", "on", "True or False"),
        ("TRAIN_TEXT_TOWER", "yes", "True or False"),
    ],
)
def test_bad_values_are_one_line_naming_the_allowed_ones(key, value, allowed):
    with pytest.raises(ValueError) as err:
        settings.validate({**config(), key: value})
    lines = str(err.value).splitlines()[1:]
    assert len(lines) == 1 and lines[0].strip().startswith(f"{key} = {value!r}") and allowed in lines[0]


def test_settings_pass_the_options_on_and_scratch_ignores_the_tower_flag():
    cfg = settings.validate(
        {
            **config(),
            "NORM": "rms",
            "LINEAR_BIAS": False,
            "TRAIN_TEXT_TOWER": True,
            "POOLED_TEXT": True,
            "SCALE_SHIFT": True,
        }
    )
    args = settings.unet_args(cfg, context_dim=16)
    assert args["norm"] == "rms" and args["linear_bias"] is False and args["pooled_text"] is True
    assert args["scale_shift"] is True
    assert cfg["TEXT_ENCODER"] == "scratch" and settings.text_args(cfg)["train_tower"] is False
    opened = {**cfg, "TEXT_ENCODER": "open_clip", "OPEN_CLIP_PRETRAINED": "x.pt"}
    assert settings.text_args(opened)["train_tower"] is True
    with pytest.raises(ValueError, match="scratch encoder is always trained"):
        build_text_encoder(
            kind="scratch",
            context_length=8,
            width=16,
            heads=2,
            layers=1,
            open_clip_model="",
            open_clip_pretrained="",
            vocab=(1, 2),
            train_tower=True,
        )


# ---- the options through train.py, the checkpoint, export and sample.py ---------------------------------------
@pytest.fixture(scope="module")
def unet_options_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    tiny_train(
        runs,
        "rms",
        "--max-steps",
        "2",
        "--set",
        "NORM=rms",
        "--set",
        "LINEAR_BIAS=False",
        "--set",
        "POOLED_TEXT=True",
        "--set",
        "SCALE_SHIFT=True",
    )
    return runs, newest(runs / "rms")


def test_unet_options_are_recorded_and_rebuilt_from_the_checkpoint(unet_options_run, capsys):
    runs, path = unet_options_run
    ckpt = load_checkpoint(str(path))
    assert ckpt["unet_args"]["norm"] == "rms" and ckpt["unet_args"]["linear_bias"] is False
    assert ckpt["config"]["NORM"] == "rms" and ckpt["config"]["LINEAR_BIAS"] is False
    assert ckpt["unet_args"]["pooled_text"] is True and "text_to_time.weight" in ckpt["ema_unet"]
    assert ckpt["unet_args"]["scale_shift"] is True and ckpt["config"]["SCALE_SHIFT"] is True
    pipe = Pipeline.from_checkpoint(str(path))
    assert pipe.unet.text_to_time is not None
    assert all(m.scale_shift for m in pipe.unet.modules() if isinstance(m, ResBlock))
    assert not linear_biases(pipe.unet) and not any(
        isinstance(m, (nn.GroupNorm, nn.LayerNorm)) for m in pipe.unet.modules()
    )
    trained = UNet(**ckpt["unet_args"])
    trained.load_state_dict(ckpt["ema_unet"])
    x = inputs(ckpt["unet_args"], seed=3)
    with torch.no_grad():  # up to the float rounding of the channels_last convolutions sampling uses
        assert torch.allclose(pipe.unet(*x), trained.eval()(*x), atol=1e-6)
    out = str(runs / "rms.safetensors")
    export(ckpt, out, source=str(path))
    images = [
        Pipeline.from_checkpoint(p).generate(PROMPTS, guidance_scale=3.0, num_steps=2, seed=1) for p in (str(path), out)
    ]
    assert torch.equal(images[0], images[1])
    sample.describe(str(path), ckpt)  # today's decisions are "group" with biases: sample.py says so
    said = capsys.readouterr().out
    assert "NORM: checkpoint 'rms', decisions now 'group'" in said and "LINEAR_BIAS: checkpoint False" in said


def test_checkpoints_and_exports_from_before_the_options_load_as_today(unet_options_run, tmp_path):
    old = load_checkpoint(os.path.join(ROOT, "tests", "data", "ckpt-format1-pre-layout.pt"))
    assert old["unet_args"]["linear_bias"] is True and old["unet_args"]["norm"] == "group"
    assert old["unet_args"]["pooled_text"] is False and old["text_args"]["train_tower"] is False
    assert old["unet_args"]["scale_shift"] is False
    _, path = unet_options_run
    out = tmp_path / "old.safetensors"
    export(load_checkpoint(str(path)), str(out), source=str(path))
    described = tmp_path / os.path.basename(json_path(str(out)))
    meta = json.loads(described.read_text())
    for group, key in (
        ("unet_args", "linear_bias"),
        ("unet_args", "norm"),
        ("unet_args", "pooled_text"),
        ("unet_args", "scale_shift"),
        ("text_args", "train_tower"),
    ):
        del meta[group][key]  # as an export written before these arguments existed
    described.write_text(json.dumps(meta))
    loaded = load_model(str(out))  # as --init-from compares it with a run's arguments
    assert loaded["unet_args"]["linear_bias"] is True and loaded["unet_args"]["norm"] == "group"
    assert loaded["unet_args"]["pooled_text"] is False and loaded["text_args"]["train_tower"] is False
    assert loaded["unet_args"]["scale_shift"] is False


# ---- TRAIN_TEXT_TOWER (ADR 0031) -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """(model name, weights file) of a tiny open_clip model, random weights, saved locally."""
    folder = tmp_path_factory.mktemp("clip")
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (folder / "tiny-tower-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder / "tiny-tower-clip.json")
    torch.manual_seed(0)
    weights = folder / "tiny.pt"
    torch.save(open_clip.create_model("tiny-tower-clip").state_dict(), weights)
    return "tiny-tower-clip", weights


def tower(tiny_clip, train_tower):
    name, weights = tiny_clip
    return build_text_encoder(
        kind="open_clip",
        context_length=12,
        width=0,
        heads=0,
        layers=0,
        open_clip_model=name,
        open_clip_pretrained=str(weights),
        train_tower=train_tower,
    )


def test_a_trained_tower_moves_under_an_optimizer_step_and_a_frozen_one_cannot(tiny_clip):
    tokens, _ = PromptTokenizer(context_length=12, open_clip_model=tiny_clip[0])(PROMPTS)
    frozen, trained = tower(tiny_clip, False), tower(tiny_clip, True)
    assert frozen.frozen and not trained.frozen and trained.training and not frozen.training
    assert torch.allclose(frozen(tokens), trained(tokens), atol=1e-5)  # the same tower (eval: a fused attention kernel)
    assert not frozen(tokens).requires_grad and not optim.param_groups([(frozen.parameters(), 1e-2)])
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    assert "positional_embedding" in before  # trained too, so stored
    opt = optim.build_optimizer(
        "adamw", optim.param_groups([(trained.parameters(), 1e-2)]), betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0
    )
    trained(tokens).pow(2).mean().backward()
    opt.step()
    moved = [k for k, v in trained.state_dict().items() if not torch.equal(v, before[k])]
    assert "positional_embedding" in moved and "tower.ln_final.weight" in moved
    assert any(k.startswith("tower.transformer.") for k in moved)


@pytest.fixture(scope="module")
def tower_runs(tiny_clip, tmp_path_factory):
    """A 2-step run training the tiny tower, and the same run as 1 step + a resume."""
    name, weights = tiny_clip
    runs = tmp_path_factory.mktemp("runs")
    extra = sets(
        "TEXT_ENCODER=open_clip",
        f"OPEN_CLIP_MODEL={name}",
        f"OPEN_CLIP_PRETRAINED={weights}",
        "TEXT_CONTEXT_LENGTH=12",
        "TRAIN_TEXT_TOWER=True",
        "TEXT_LEARNING_RATE=0.01",
    )
    tiny_train(runs, "straight", "--max-steps", "2", *extra)
    tiny_train(runs, "halves", "--max-steps", "1", *extra)
    tiny_train(runs, "halves", "--resume", "halves", "--max-steps", "2", *extra)
    return runs


def test_the_trained_tower_is_uncached_trained_at_its_rate_and_stored(tiny_clip, tower_runs):
    ckpt = load_checkpoint(str(newest(tower_runs / "straight")))
    assert ckpt["text_args"]["train_tower"] is True and ckpt["config"]["TRAIN_TEXT_TOWER"] is True
    assert ckpt["config"]["TEXT_CACHE_MB"] > 0  # a frozen tower's captions would have been cached here
    groups = ckpt["optimizer"]["param_groups"]
    assert [g["base_lr"] for g in groups] == [ckpt["config"]["LEARNING_RATE"], 0.01]
    pretrained = torch.load(tiny_clip[1], map_location="cpu", weights_only=True)
    stored = ckpt["text_encoder"]
    assert stored is not None and ckpt["ema_text_encoder"] is not None

    def key(k):  # ours hold CLIP's text parts under .tower
        return k.removeprefix("tower.")

    assert set(map(key, stored)) <= set(pretrained)
    moved = [k for k, v in stored.items() if not torch.equal(v, pretrained[key(k)])]
    assert "positional_embedding" in moved and any(k.startswith("tower.transformer.") for k in moved)


def test_resume_restores_the_trained_tower_exactly(tower_runs):
    a = load_checkpoint(str(newest(tower_runs / "straight")))
    b = load_checkpoint(str(newest(tower_runs / "halves")))
    assert a["step"] == b["step"] == 2
    for part in ("text_encoder", "ema_text_encoder", "unet"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs after resume"


def test_sampling_and_export_rebuild_the_trained_tower_without_the_pretrained_file(tiny_clip, tower_runs, tmp_path):
    path = str(newest(tower_runs / "straight"))
    ckpt = load_checkpoint(path)
    out = str(tmp_path / "tower.safetensors")
    export(ckpt, out, source=path)
    hidden = tmp_path / "hidden.pt"
    shutil.move(tiny_clip[1], hidden)  # the weights file the tower started from is gone
    try:
        pipes = [Pipeline.from_checkpoint(p) for p in (path, out)]
        images = [pipe.generate(PROMPTS, guidance_scale=3.0, num_steps=2, seed=1) for pipe in pipes]
    finally:
        shutil.move(hidden, tiny_clip[1])
    assert torch.equal(images[0], images[1])
    for pipe in pipes:
        state = pipe.text_encoder.state_dict()
        assert set(state) == set(ckpt["ema_text_encoder"])
        assert all(torch.equal(state[k], ckpt["ema_text_encoder"][k]) for k in state)
