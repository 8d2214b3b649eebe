"""The update rule (ddpm/run/optim.py): each option changes the update, the defaults are today's, and gradient
accumulation over k micro-batches of b matches one batch of k·b."""

import copy
import importlib.util
import math

import pytest
import torch

from ddpm.model.diffusion import GaussianDiffusion
from ddpm.model.unet import UNet
from ddpm.run import optim, settings

DEFAULTS = dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)


def two_steps(model, name="adamw", lrs=(1e-2, 1e-2), scales=(1.0, -3.0), **kw):
    """Copy of ``model`` after two optimizer steps on fixed losses; the first layer and the rest get ``lrs``.
    (Two, with different gradients: after one, Adam's update is ±lr like Lion's, and the betas do not show.)"""
    model = copy.deepcopy(model)
    first, rest = model[0], model[1:]
    opt = optim.build_optimizer(
        name, optim.param_groups([(first.parameters(), lrs[0]), (rest.parameters(), lrs[1])]), **{**DEFAULTS, **kw}
    )
    for scale in scales:
        opt.zero_grad()
        (scale * model(torch.linspace(-1, 1, 12).reshape(3, 4)).pow(2).sum()).backward()
        opt.step()
    return model


@pytest.fixture
def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_default_adamw_is_todays_update(model):
    """The default (adamw, torch's betas and ε, one group) is exactly torch.optim.AdamW as train.py built it."""
    ours = two_steps(model)
    theirs = copy.deepcopy(model)
    opt = torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.0)
    for scale in (1.0, -3.0):
        opt.zero_grad()
        (scale * theirs(torch.linspace(-1, 1, 12).reshape(3, 4)).pow(2).sum()).backward()
        opt.step()
    assert torch.equal(flat(ours), flat(theirs))


def test_each_optimizer_changes_the_update(model):
    updates = {name: flat(two_steps(model, name)) - flat(model) for name in ("adamw", "lion", "adafactor")}
    for name in ("lion", "adafactor"):
        assert not torch.allclose(updates[name], updates["adamw"]), name
    lion_steps = (updates["lion"].abs() / 1e-2).round()
    assert set(lion_steps.tolist()) <= {0.0, 2.0}, "Lion moves each weight by lr · sign(...) per step"


def test_betas_and_eps_change_the_update(model):
    base = flat(two_steps(model))
    assert not torch.allclose(flat(two_steps(model, eps=1.0)), base)
    assert not torch.allclose(flat(two_steps(model, betas=(0.5, 0.9))), base)


def test_adamw8bit_is_a_clear_error_without_bitsandbytes(model):
    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here")
    with pytest.raises(optim.OptimizerUnavailable, match="pip install bitsandbytes"):
        two_steps(model, "adamw8bit")


def test_groups_merge_equal_rates_and_a_separate_rate_moves_only_its_part(model):
    assert len(optim.param_groups([(model[0].parameters(), 1e-3), (model[2].parameters(), 1e-3)])) == 1
    assert len(optim.param_groups([(model[0].parameters(), 1e-3), ([], 5e-3)])) == 1
    same, split = two_steps(model, scales=(1.0,)), two_steps(model, lrs=(1e-2, 1e-3), scales=(1.0,))  # one step
    assert torch.equal(flat(same[0]), flat(split[0]))
    assert not torch.allclose(flat(same[2]), flat(split[2]))


def test_lr_factor_constant_is_todays_warmup_and_cosine_decays_to_the_floor():
    kw = dict(warmup_steps=200, total_steps=1000, min_ratio=0.1)
    for step in (0, 1, 199, 200, 999):
        assert optim.lr_factor(step, schedule="constant", **kw) == min(1.0, (step + 1) / 200)
        if step < 200:
            assert optim.lr_factor(step, schedule="cosine", **kw) == min(1.0, (step + 1) / 200)
    cos = [optim.lr_factor(s, schedule="cosine", **kw) for s in range(200, 1001)]
    assert cos[0] == 1.0 and math.isclose(cos[-1], 0.1)
    assert math.isclose(cos[400], 0.55), "half-way: the middle of peak and floor"
    assert all(a >= b for a, b in zip(cos, cos[1:]))


def test_optimizer_reaches_set_lr(model):
    opt = optim.build_optimizer(
        "adamw", optim.param_groups([(model[0].parameters(), 1e-3), (model[2].parameters(), 4e-3)]), **DEFAULTS
    )
    optim.set_lr(opt, 0.5)
    assert [g["lr"] for g in opt.param_groups] == [5e-4, 2e-3]


def test_accumulating_k_micro_batches_matches_one_batch(tiny_unet_args):
    """Same images, captions, t and noise: 4 micro-batches of 2 give the gradient of one batch of 8."""
    torch.manual_seed(0)
    unet = UNet(**tiny_unet_args)
    diffusion = GaussianDiffusion(
        timesteps=100, schedule="cosine", beta_start=1e-4, beta_end=0.02, prediction="epsilon"
    )
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(8, 3, 8, 8, generator=g), torch.randn(8, 3, 8, 8, generator=g)
    t = torch.randint(0, 100, (8,), generator=g)
    context, mask = torch.randn(8, 5, 16, generator=g), torch.ones(8, 5, dtype=torch.bool)

    def grads(steps):
        unet.zero_grad()

        def loss_of(part):
            losses = diffusion.loss_per_sample(unet, x0[part], t[part], noise[part], context[part], mask[part])
            return (diffusion.min_snr_weights(t[part], 5.0) * losses).mean(), losses

        loss, losses = optim.accumulate(loss_of, 8, steps)
        return loss, losses, torch.cat([p.grad.flatten() for p in unet.parameters()])

    (loss1, losses1, g1), (loss4, losses4, g4) = grads(1), grads(4)
    assert torch.allclose(loss1, loss4, rtol=1e-5) and torch.allclose(losses1, losses4, rtol=1e-5)
    assert torch.allclose(g1, g4, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(g1, grads(4)[2] * 4), "the micro-batch losses are scaled by their share"


def test_a_non_finite_micro_batch_makes_the_step_non_finite():
    w = torch.nn.Parameter(torch.ones(()))
    calls = []

    def loss_of(part):
        calls.append(part)
        value = w * (float("nan") if len(calls) == 2 else 1.0)
        return value, value.detach().expand(2)

    loss, losses = optim.accumulate(loss_of, 8, 4)
    assert not torch.isfinite(loss) and len(calls) == 4, "every backward runs (DDP needs each rank in it)"
    assert not torch.isfinite(w.grad), "the caller sees it in the gradient norm and skips the update"


def test_settings_refuse_an_accumulation_that_does_not_divide_the_batch():
    import config

    cfg = {**settings.config_from_module(config), "BATCH_SIZE": 32, "GRAD_ACCUM_STEPS": 3}
    with pytest.raises(ValueError, match="GRAD_ACCUM_STEPS = 3: must divide BATCH_SIZE = 32"):
        settings.validate(cfg)
    for key, bad in (("OPTIMIZER", "sgd"), ("ADAM_BETAS", (0.9, 1.0)), ("LR_SCHEDULE", "step"), ("ADAM_EPS", 0.0)):
        with pytest.raises(ValueError, match=key):
            settings.validate({**settings.config_from_module(config), key: bad})
