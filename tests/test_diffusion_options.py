"""v-prediction and offset noise (ddpm/model/diffusion.py): each changes the loss or the noise, and the samplers
turn a v-network into the same images as the equivalent ε-network."""

import os

import pytest
import torch

from ddpm.model.diffusion import GaussianDiffusion, make_noise
from ddpm.run.checkpoint import load_checkpoint

ARGS = dict(timesteps=50, schedule="cosine", beta_start=1e-4, beta_end=0.02)


def at(table, t):
    return table[t].view(-1, 1, 1, 1)


def test_v_loss_targets_v_and_the_oracle_v_has_zero_loss():
    eps_d, v_d = GaussianDiffusion(**ARGS, prediction="epsilon"), GaussianDiffusion(**ARGS, prediction="v")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 3, 4, 4, generator=g), torch.randn(6, 3, 4, 4, generator=g)
    t = torch.tensor([0, 5, 10, 20, 40, 49])
    v = at(v_d.sqrt_alphas_cumprod, t) * noise - at(v_d.sqrt_one_minus_alphas_cumprod, t) * x0
    oracle_v = lambda x, tt, c, m: v  # noqa: E731
    assert v_d.loss_per_sample(oracle_v, x0, t, noise, None, None).max() < 1e-10
    assert eps_d.loss_per_sample(oracle_v, x0, t, noise, None, None).min() > 1e-3, "ε-prediction wants ε, not v"
    x_t = v_d.q_sample(x0, t, noise)
    assert torch.allclose(v_d.eps_from_output(x_t, t, v), noise, atol=1e-5)
    assert torch.equal(eps_d.eps_from_output(x_t, t, noise), noise)


def test_min_snr_weights_for_v_are_min_snr_gamma_over_snr_plus_one():
    t = torch.arange(50)
    eps_d, v_d = GaussianDiffusion(**ARGS, prediction="epsilon"), GaussianDiffusion(**ARGS, prediction="v")
    snr = eps_d.alphas_cumprod / (1 - eps_d.alphas_cumprod)
    assert torch.allclose(v_d.min_snr_weights(t, 5.0), snr.clamp(max=5.0) / (snr + 1))
    assert torch.allclose(eps_d.min_snr_weights(t, 5.0), snr.clamp(max=5.0) / snr)
    assert torch.equal(v_d.min_snr_weights(t, 0.0), torch.ones(50))


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp2m", "ddpm"])
def test_samplers_turn_a_v_network_into_the_images_of_the_same_eps_network(sampler):
    eps_d, v_d = GaussianDiffusion(**ARGS, prediction="epsilon"), GaussianDiffusion(**ARGS, prediction="v")

    def eps_net(x, t, context, mask):  # depends on the prompt, so guidance acts
        return 0.3 * x + context.mean(dim=(1, 2)).view(-1, 1, 1, 1)

    def v_net(x, t, context, mask):  # the same network, answering in v: v = (ε − √(1−ᾱ)·x_t)/√ᾱ
        return (eps_net(x, t, context, mask) - at(v_d.sqrt_one_minus_alphas_cumprod, t) * x) / at(
            v_d.sqrt_alphas_cumprod, t
        )

    ctx, mask = torch.randn(4, 2, 3), torch.ones(4, 2, dtype=torch.bool)
    kw = dict(
        context=ctx,
        context_mask=mask,
        null_context=torch.zeros(1, 2, 3),
        null_mask=mask[:1],
        guidance_scale=3.0,
        sampler=sampler,
        num_steps=8,
        eta=0.0,
        clip_x0=True,
    )
    a = eps_d.sample(eps_net, (4, 3, 4, 4), generator=torch.Generator().manual_seed(0), **kw)
    b = v_d.sample(v_net, (4, 3, 4, 4), generator=torch.Generator().manual_seed(0), **kw)
    assert torch.allclose(a, b, atol=1e-4)


def test_offset_noise_shifts_each_image_channel_and_zero_draws_as_before():
    plain = make_noise((512, 3, 8, 8), 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(plain, torch.randn((512, 3, 8, 8), generator=torch.Generator().manual_seed(0)))
    offset = make_noise((512, 3, 8, 8), 0.5, torch.Generator().manual_seed(0))
    means = offset.mean(dim=(2, 3))  # (B, C): variance 1/64 + 0.5² with the offset, 1/64 without
    assert 0.2 < means.var().item() < 0.33 and plain.mean(dim=(2, 3)).var().item() < 0.03
    assert torch.allclose(offset - plain, (offset - plain)[:, :, :1, :1].expand_as(offset), atol=1e-6), (
        "constant per image and channel"
    )


def test_a_checkpoint_from_before_prediction_existed_loads_as_epsilon():
    path = os.path.join(os.path.dirname(__file__), "data", "ckpt-format1-pre-layout.pt")
    ckpt = load_checkpoint(path)
    assert ckpt["diffusion_args"]["prediction"] == "epsilon"
    GaussianDiffusion(**ckpt["diffusion_args"])
