"""Closed forms and invariants of the schedules, the forward process, the samplers and guidance."""

import math

import pytest
import torch

from ddpm.model.diffusion import GaussianDiffusion, ddim_timesteps, guided_eps, make_betas


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_betas_in_open_unit_interval_and_alphas_cumprod_decreasing(schedule):
    d = GaussianDiffusion(timesteps=100, schedule=schedule, beta_start=1e-4, beta_end=0.02, prediction="epsilon")
    assert ((d.betas > 0) & (d.betas < 1)).all()
    assert (d.alphas_cumprod[1:] < d.alphas_cumprod[:-1]).all()
    assert d.alphas_cumprod.dtype == torch.float32


def test_linear_schedule_endpoints_and_cosine_formula():
    betas = make_betas("linear", 10, beta_start=0.1, beta_end=0.5)
    assert betas[0].item() == pytest.approx(0.1) and betas[-1].item() == pytest.approx(0.5)
    T, s = 50, 0.008
    betas = make_betas("cosine", T, beta_start=0, beta_end=0)
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    for t in (1, 17, 40):  # Improved DDPM eq. 17: ᾱ_t = f(t)/f(0)
        assert torch.prod(1 - betas[:t]).item() == pytest.approx(f(t) / f(0), rel=1e-9)


def test_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="unknown beta schedule 'quadratic'"):
        make_betas("quadratic", 10, beta_start=0.1, beta_end=0.2)


def test_q_sample_closed_form():
    d = GaussianDiffusion(timesteps=100, schedule="linear", beta_start=1e-4, beta_end=0.02, prediction="epsilon")
    x0 = torch.rand(3, 3, 4, 4) * 2 - 1
    t = torch.tensor([0, 50, 99])
    zero = d.q_sample(x0, t, torch.zeros_like(x0))
    assert torch.allclose(zero, d.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1) * x0)
    noise = torch.randn_like(x0)
    pure = d.q_sample(torch.zeros_like(x0), t, noise)
    # 1 − ᾱ in float32 loses digits near ᾱ = 1; the table is computed in float64, hence the tolerance
    assert torch.allclose(pure, (1 - d.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1) * noise, atol=1e-5)


def test_p_sample_matches_ddpm_eq_11_with_dummy_network():
    d = GaussianDiffusion(timesteps=20, schedule="linear", beta_start=1e-3, beta_end=0.2, prediction="epsilon")
    x = torch.randn(2, 3, 4, 4)
    eps = torch.randn_like(x)  # what a dummy network would predict
    z = torch.randn_like(x)
    t = 7
    out = d.p_sample(x, torch.full((2,), t), eps, clip_x0=False, noise=z)
    beta, alpha, abar = d.betas[t], 1 - d.betas[t], d.alphas_cumprod[t]
    abar_prev = d.alphas_cumprod[t - 1]
    sigma2 = beta * (1 - abar_prev) / (1 - abar)  # β̃_t
    expected = (x - beta / (1 - abar).sqrt() * eps) / alpha.sqrt() + sigma2.sqrt() * z
    assert torch.allclose(out, expected, atol=1e-5)
    # At t = 0 no noise is added.
    last = d.p_sample(x, torch.zeros(2, dtype=torch.long), eps, clip_x0=False, noise=z)
    assert torch.allclose(
        last, d.p_sample(x, torch.zeros(2, dtype=torch.long), eps, clip_x0=False, noise=torch.zeros_like(z))
    )


def test_ddim_step_eta0_is_deterministic_formula():
    d = GaussianDiffusion(timesteps=50, schedule="cosine", beta_start=0, beta_end=0, prediction="epsilon")
    x, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    t, tp = 30, 10
    a_t, a_p = d.alphas_cumprod[t], d.alphas_cumprod[tp]
    x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    expected = a_p.sqrt() * x0 + (1 - a_p).sqrt() * eps  # DDIM eq. 12 with σ = 0
    out = d.ddim_step(x, t, tp, eps, eta=0.0, clip_x0=False, noise=torch.randn_like(x))
    assert torch.allclose(out, expected, atol=1e-5)
    final = d.ddim_step(x, t, -1, eps, eta=0.0, clip_x0=False, noise=torch.randn_like(x))
    assert torch.allclose(final, x0, atol=1e-5)  # t' = −1 lands on the predicted clean image


@pytest.mark.parametrize("T,S", [(1000, 50), (1000, 1000), (10, 3), (7, 1), (1000, 999)])
def test_ddim_table_strictly_decreasing_in_range(T, S):
    table = ddim_timesteps(T, S)
    assert len(table) == S
    assert table[0] == T - 1 and table.min() >= 0
    assert (table[1:] < table[:-1]).all()
    if S > 1:
        assert table[-1] == 0


@pytest.mark.parametrize("S", [0, 11])
def test_ddim_table_rejects_bad_step_counts(S):
    with pytest.raises(ValueError, match=f"num_steps={S}"):
        ddim_timesteps(10, S)


def test_guidance_scale_one_is_conditional_and_zero_unconditional():
    c, u = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert torch.equal(guided_eps(c, u, 1.0), u + (c - u))
    assert torch.allclose(guided_eps(c, u, 1.0), c, atol=1e-6)
    assert torch.equal(guided_eps(c, u, 0.0), u)
    assert torch.allclose(guided_eps(c, u, 3.0), u + 3 * (c - u))


def test_sampler_with_guidance_one_skips_the_unconditional_branch():
    d = GaussianDiffusion(timesteps=10, schedule="linear", beta_start=1e-3, beta_end=0.2, prediction="epsilon")
    batches = []

    def model(x, t, ctx, mask):
        batches.append(x.shape[0])
        return torch.zeros_like(x)

    ctx, mask = torch.zeros(2, 3, 4), torch.ones(2, 3, dtype=torch.bool)
    kw = dict(
        context=ctx,
        context_mask=mask,
        null_context=ctx[:1],
        null_mask=mask[:1],
        sampler="ddim",
        num_steps=4,
        eta=0.0,
        clip_x0=True,
        generator=torch.Generator().manual_seed(0),
    )
    out = d.sample(model, (2, 3, 4, 4), guidance_scale=1.0, **kw)
    assert batches == [2] * 4 and out.shape == (2, 3, 4, 4) and out.abs().max() <= 1
    batches.clear()
    d.sample(model, (2, 3, 4, 4), guidance_scale=2.0, **kw)
    assert batches == [4] * 4  # conditional and unconditional in one batched call


def test_ddpm_sampler_runs_all_timesteps_and_is_seeded():
    d = GaussianDiffusion(timesteps=12, schedule="linear", beta_start=1e-3, beta_end=0.2, prediction="epsilon")
    calls = []

    def model(x, t, ctx, mask):
        calls.append(int(t[0]))
        return 0.1 * x

    ctx, mask = torch.zeros(1, 2, 4), torch.ones(1, 2, dtype=torch.bool)
    kw = dict(
        context=ctx,
        context_mask=mask,
        null_context=None,
        null_mask=None,
        guidance_scale=1.0,
        sampler="ddpm",
        num_steps=1,
        eta=0.0,
        clip_x0=False,
    )
    a = d.sample(model, (1, 3, 4, 4), generator=torch.Generator().manual_seed(3), **kw)
    assert calls == list(range(11, -1, -1))
    b = d.sample(model, (1, 3, 4, 4), generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(a, b)


def test_min_snr_weights_closed_form():
    d = GaussianDiffusion(timesteps=100, schedule="cosine", beta_start=0, beta_end=0, prediction="epsilon")
    t = torch.tensor([0, 10, 50, 99])
    assert torch.equal(d.min_snr_weights(t, 0.0), torch.ones(4))
    snr = d.alphas_cumprod[t] / (1 - d.alphas_cumprod[t])
    w = d.min_snr_weights(t, 5.0)
    assert torch.allclose(w, torch.where(snr > 5, 5 / snr, torch.ones(4)))
    assert w[0] < w[1] < 1 and w[-1] == 1  # low noise (high SNR) is down-weighted; high noise is not
