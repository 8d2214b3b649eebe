"""v-prediction and offset noise (ddpm/model/diffusion.py): each changes the loss or the noise, and the samplers
turn a v-network into the same images as the equivalent ε-network."""

import math
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


# ---- ADR 0055: timestep densities, EDM preconditioning, flow matching ----------------------------------------
def test_logit_normal_draws_follow_their_closed_form_density():
    from ddpm.model.timesteps import draw, logit_normal_pdf

    u = draw("logit_normal", 200_000, generator=torch.Generator().manual_seed(0), device="cpu", loc=0.5, scale=0.8)
    hist = torch.histc(u, bins=20, min=0, max=1) / len(u) / 0.05  # the empirical density on 20 bins
    centres = torch.arange(20) * 0.05 + 0.025
    assert torch.allclose(hist, logit_normal_pdf(centres, 0.5, 0.8), atol=0.06)
    mid = torch.linspace(1e-4, 1 - 1e-4, 100_001)  # the density integrates to 1
    assert torch.trapezoid(logit_normal_pdf(mid, 0.5, 0.8), mid).item() == pytest.approx(1.0, abs=1e-3)


def test_uniform_draws_what_the_loop_drew_before_and_the_others_move_the_steps():
    from ddpm.model.timesteps import draw

    d = GaussianDiffusion(**ARGS, prediction="epsilon")
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    same = draw("uniform", 64, generator=g(), device="cpu", timesteps=50, sigmas=d.sigmas)
    assert torch.equal(same, torch.randint(0, 50, (64,), generator=g()))  # the default's runs, draw for draw
    mid = draw("logit_normal", 4096, generator=g(), device="cpu", timesteps=50)
    assert mid.dtype == torch.long and 0 <= mid.min() and mid.max() < 50 and (mid - 24.5).abs().float().mean() < 10
    edm = draw("lognormal_sigma", 4096, generator=g(), device="cpu", loc=-1.2, scale=1.2, timesteps=50, sigmas=d.sigmas)
    assert d.sigmas[edm].log().median().item() == pytest.approx(-1.2, abs=0.3)  # the steps nearest ln σ ~ N(-1.2, 1.2)
    flow_t = draw("lognormal_sigma", 4096, generator=g(), device="cpu", loc=-1.2, scale=1.2)
    assert flow_t.dtype == torch.float32 and 0 < flow_t.min() and flow_t.max() < 1


def test_edm_coefficients_at_small_and_large_sigma():
    from ddpm.model.diffusion import edm_coefficients

    c_skip, c_out, c_in, c_noise = edm_coefficients(torch.tensor([1e-6, 1e6], dtype=torch.float64), 0.5)
    assert c_skip[0] == pytest.approx(1.0) and c_out[0] == pytest.approx(0.0, abs=1e-5)  # D(x) → x as σ → 0
    assert c_skip[1] == pytest.approx(0.0, abs=1e-12) and c_out[1] == pytest.approx(0.5)  # the network alone as σ → ∞
    assert (c_in[1] * 1e6).item() == pytest.approx(1.0) and c_noise[1].item() == pytest.approx(math.log(1e6) / 4)
    sigma = torch.tensor([0.3, 2.0])  # unit variance of the input and of the target for x_0 of variance σ_d²
    c_skip, c_out, c_in, _ = edm_coefficients(sigma, 0.5)
    assert torch.allclose(c_in**2 * (0.25 + sigma**2), torch.ones(2))
    assert torch.allclose((c_skip**2 * sigma**2 + (1 - c_skip) ** 2 * 0.25) / c_out**2, torch.ones(2))


def test_edm_oracle_has_zero_loss_and_samples_as_the_eps_network_does():
    eps_d, edm_d = GaussianDiffusion(**ARGS, prediction="epsilon"), GaussianDiffusion(**ARGS, prediction="edm")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 3, 4, 4, generator=g), torch.randn(6, 3, 4, 4, generator=g)
    t = torch.tensor([0, 5, 10, 20, 40, 49])
    from ddpm.model.diffusion import edm_coefficients

    c_skip, c_out, _, _ = edm_coefficients(at(edm_d.sigmas, t), 0.5)
    f_star = (x0 - c_skip * (x0 + at(edm_d.sigmas, t) * noise)) / c_out
    assert edm_d.loss_per_sample(lambda x, tt, c, m: f_star, x0, t, noise, None, None).max() < 1e-9
    x_t = edm_d.q_sample(x0, t, noise)
    assert torch.allclose(edm_d.eps_from_output(x_t, t, f_star), noise, atol=1e-4)
    assert not torch.equal(edm_d.network_input(x_t, t), x_t) and torch.equal(eps_d.network_input(x_t, t), x_t)


def test_the_flow_path_has_its_endpoints_and_its_velocity():
    from ddpm.model.flow import FlowMatching

    flow = FlowMatching(timesteps=1000)
    x0, eps = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4)
    assert torch.equal(flow.path(x0, torch.zeros(3), eps), x0) and torch.equal(flow.path(x0, torch.ones(3), eps), eps)
    t, dt = torch.full((3,), 0.3), 1e-3
    slope = (flow.path(x0, t + dt, eps) - flow.path(x0, t, eps)) / dt
    assert torch.allclose(slope, eps - x0, atol=1e-3)
    oracle = lambda x, tt, c, m: eps - x0  # noqa: E731
    assert flow.loss_per_sample(oracle, x0, t, eps, None, None).max() < 1e-12
    assert torch.equal(flow.quartile(torch.tensor([0.0, 0.3, 0.6, 0.99])), torch.tensor([0, 1, 2, 3]))


def gaussian_velocity(mu: float, s: float):
    """The exact flow-matching velocity for data N(μ, s²) per pixel: E[ε − x_0 | x_t = x] on x_t = (1−t)x_0 + tε."""

    def net(x, model_t, context, mask):
        t = (model_t / 1000).view(-1, 1, 1, 1)
        var = (1 - t) ** 2 * s**2 + t**2
        gain_x0 = (1 - t) * s**2 / var  # E[x_0 | x] = μ + gain·(x − (1−t)μ)
        gain_eps = t / var  # E[ε | x] = gain·(x − (1−t)μ)
        centred = x - (1 - t) * mu
        return gain_eps * centred - (mu + gain_x0 * centred)

    return net


def test_euler_and_heun_transport_a_gaussian_to_its_exact_answer():
    """x_1 = z maps to x_0 = μ + s·z along the exact field; Heun's error falls as 1/N², Euler's as 1/N."""
    from ddpm.model.flow import FlowMatching

    flow, mu, s = FlowMatching(timesteps=1000), 0.3, 0.5
    ctx, mask = torch.zeros(8, 1, 2), torch.ones(8, 1, dtype=torch.bool)
    kw = dict(context=ctx, context_mask=mask, null_context=None, null_mask=None, guidance_scale=1.0)
    z = torch.randn((8, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    exact = (mu + s * z).clamp(-1, 1)

    def error(sampler, steps):
        out = flow.sample(
            gaussian_velocity(mu, s),
            (8, 1, 2, 2),
            sampler=sampler,
            num_steps=steps,
            generator=torch.Generator().manual_seed(0),
            **kw,
        )
        return (out - exact).abs().max().item()

    assert error("heun", 32) < 3e-3 and error("euler", 32) < 0.06
    assert error("heun", 8) / error("heun", 16) > 3.0  # second order
    assert 1.5 < error("euler", 8) / error("euler", 16) < 2.5  # first order
    assert error("heun", 8) < error("euler", 8)


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory):
    """The UNet of a tiny run after two steps with these settings; each set of settings trained once a module."""
    from test_train_faults import checkpoints, load, ok, train_run

    runs, done = tmp_path_factory.mktemp("options"), {}

    def unet(*settings):
        if settings not in done:
            name = f"r{len(done)}"
            ok(train_run(runs, "--run", name, "--max-steps", "2", *[a for s in settings for a in ("--set", s)]))
            done[settings] = load(checkpoints(runs / name)[-1])
        return done[settings]

    return unet


@pytest.mark.parametrize("setting", ["TIMESTEP_DENSITY=logit_normal", "PREDICTION=edm", "OBJECTIVE=flow"])
def test_each_option_changes_the_update(setting, two_step_run):
    """A tiny run's weights after two steps differ from the default's: the option reaches the update."""
    extra = {"PREDICTION=edm": ("MIN_SNR_GAMMA=0",), "OBJECTIVE=flow": ("SAMPLER=euler",)}.get(setting, ())
    # against the default with the same companion setting, so that only the option differs
    a = two_step_run(*[s for s in extra if not s.startswith("SAMPLER")])
    b = two_step_run(setting, *extra)
    assert any(not torch.equal(a["unet"][k], b["unet"][k]) for k in a["unet"])
    assert b["diffusion_args"] != a["diffusion_args"] or setting.startswith("TIMESTEP")
