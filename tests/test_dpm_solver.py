"""DPM-Solver++(2M) (ddpm/model/diffusion.py) against closed forms: on Gaussian data with the exact denoiser, the
probability-flow ODE's answer is known, so the solver's order and its first step can be checked."""

import torch

from ddpm.model.diffusion import GaussianDiffusion, ddim_timesteps

MU, S = 0.3, 0.5  # the data: every pixel ~ N(MU, S²), independent


def gaussian_oracle(diffusion):
    """ε(x_t, t) of the exact posterior mean E[x_0 | x_t] = μ + α·s²/(α²s² + σ²)·(x_t − α·μ)."""
    def eps(x, t, context, mask):
        a = diffusion.alphas_cumprod[t].double().view(-1, 1, 1, 1)
        alpha, sigma2 = a.sqrt(), 1 - a
        x0 = MU + alpha * S**2 / (a * S**2 + sigma2) * (x.double() - alpha * MU)
        return ((x.double() - alpha * x0) / sigma2.sqrt()).float()
    return eps


def run(diffusion, sampler, steps, seed=0):
    ctx, mask = torch.zeros(256, 1, 4), torch.ones(256, 1, dtype=torch.bool)
    return diffusion.sample(gaussian_oracle(diffusion), (256, 3, 4, 4), context=ctx, context_mask=mask, null_context=None,
                            null_mask=None, guidance_scale=1.0, sampler=sampler, num_steps=steps, eta=0.0, clip_x0=False,
                            generator=torch.Generator().manual_seed(seed))


def exact(diffusion, seed=0):
    """The ODE keeps z = (x_t − α_t·μ)/√(α_t²s² + σ_t²) fixed, so x_0 = μ + s·z from the starting noise x_T."""
    x_T = torch.randn((256, 3, 4, 4), generator=torch.Generator().manual_seed(seed)).double()
    a = diffusion.alphas_cumprod[-1].double()
    return (MU + S * (x_T - a.sqrt() * MU) / (a * S**2 + 1 - a).sqrt()).clamp(-1, 1)  # as the sampler returns it


def test_dpm_solver_is_second_order_and_closer_than_ddim_at_50_steps():
    """Halving the step size cuts DPM-Solver++(2M)'s error about 4× (second order) and DDIM's about 2× (first).

    Not asserted, because it does not hold here: with 10-20 steps on the time-uniform table, DPM-Solver++ is not
    closer than DDIM on this toy (cosine: 0.084 against 0.053 mean error at 10 steps); its extrapolation over the
    large first λ-steps overshoots. See the report of issue 10 (timestep spacing is the next thing to try)."""
    diffusion = GaussianDiffusion(timesteps=1000, schedule="cosine", beta_start=1e-4, beta_end=0.02, prediction="epsilon")
    truth = exact(diffusion)
    err = {(sampler, n): (run(diffusion, sampler, n).double() - truth).abs().mean().item()
           for sampler in ("ddim", "dpmpp2m") for n in (50, 100, 200)}
    assert err["dpmpp2m", 100] / err["dpmpp2m", 200] > 3.5 and err["ddim", 100] / err["ddim", 200] < 2.5, err
    assert err["dpmpp2m", 50] < 0.6 * err["ddim", 50] and err["dpmpp2m", 200] < 0.2 * err["ddim", 200], err


def test_first_step_equals_ddims_and_the_table_runs_down_in_range():
    diffusion = GaussianDiffusion(timesteps=1000, schedule="linear", beta_start=1e-4, beta_end=0.02, prediction="epsilon")
    table = ddim_timesteps(1000, 20).tolist()
    assert table[0] == 999 and table[-1] == 0 and all(a > b for a, b in zip(table, table[1:]))
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    x0 = diffusion.predict_x0(x, torch.full((2,), table[0]), eps)
    ours, previous = diffusion.dpmpp2m_step(x, table[0], table[1], x0, None)
    ddim = diffusion.ddim_step(x, table[0], table[1], eps, eta=0.0, clip_x0=False, noise=torch.zeros_like(x))
    assert torch.allclose(ours, ddim, atol=1e-5)
    second, _ = diffusion.dpmpp2m_step(ours, table[1], table[2], x0 + 0.1, previous)
    first_order, _ = diffusion.dpmpp2m_step(ours, table[1], table[2], x0 + 0.1, None)
    assert not torch.allclose(second, first_order), "from the second step on, the multistep correction acts"
    last, _ = diffusion.dpmpp2m_step(ours, 0, -1, x0, previous)
    assert torch.equal(last, x0), "the last step to ᾱ = 1 returns the data prediction, as DDIM's"
