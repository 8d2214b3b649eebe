"""DPM-Solver++(2M) (ddpm/model/diffusion.py) against closed forms: on Gaussian data with the exact denoiser, the
probability-flow ODE's answer is known, so the solver's order and its first step can be checked."""

import pytest
import torch

from ddpm.model.diffusion import GaussianDiffusion, ddim_timesteps, dpm_solver_timesteps

MU, S = 0.3, 0.5  # the data: every pixel ~ N(MU, S²), independent


def gaussian_oracle(diffusion):
    """ε(x_t, t) of the exact posterior mean E[x_0 | x_t] = μ + α·s²/(α²s² + σ²)·(x_t − α·μ)."""

    def eps(x, t, context, mask):
        a = diffusion.alphas_cumprod[t].double().view(-1, 1, 1, 1)
        alpha, sigma2 = a.sqrt(), 1 - a
        x0 = MU + alpha * S**2 / (a * S**2 + sigma2) * (x.double() - alpha * MU)
        return ((x.double() - alpha * x0) / sigma2.sqrt()).float()

    return eps


def run(diffusion, sampler, steps, seed=0, *, eta=0.0, n=256):
    """n samples (n, 3, 4, 4) of the Gaussian data, drawn with the exact denoiser."""
    ctx, mask = torch.zeros(n, 1, 4), torch.ones(n, 1, dtype=torch.bool)
    return diffusion.sample(
        gaussian_oracle(diffusion),
        (n, 3, 4, 4),
        context=ctx,
        context_mask=mask,
        null_context=None,
        null_mask=None,
        guidance_scale=1.0,
        sampler=sampler,
        num_steps=steps,
        eta=eta,
        clip_x0=False,
        generator=torch.Generator().manual_seed(seed),
    )


def exact(diffusion, seed=0):
    """The ODE keeps z = (x_t − α_t·μ)/√(α_t²s² + σ_t²) fixed, so x_0 = μ + s·z from the starting noise x_T."""
    x_T = torch.randn((256, 3, 4, 4), generator=torch.Generator().manual_seed(seed)).double()
    a = diffusion.alphas_cumprod[-1].double()
    return (MU + S * (x_T - a.sqrt() * MU) / (a * S**2 + 1 - a).sqrt()).clamp(-1, 1)  # as the sampler returns it


def test_dpm_solver_is_second_order_and_closer_than_ddim_at_few_steps():
    """Doubling the steps cuts DPM-Solver++(2M)'s error by well over 2× (second order: 4×) and DDIM's by about 2×
    (first order), and from 10 steps on the solver is the closer of the two: on its own table, which leaves out
    t = 0 (ADR 0045). On DDIM's table it was not, at 10-20 steps: 0.084 against 0.053 at 10 (ADR 0022)."""
    for schedule in ("cosine", "linear"):
        diffusion = GaussianDiffusion(
            timesteps=1000, schedule=schedule, beta_start=1e-4, beta_end=0.02, prediction="epsilon"
        )
        truth = exact(diffusion)
        err = {
            (sampler, n): (run(diffusion, sampler, n).double() - truth).abs().mean().item()
            for sampler in ("ddim", "dpmpp2m")
            for n in (10, 20, 40)
        }
        assert err["ddim", 10] / err["ddim", 20] < 2.5 and err["ddim", 20] / err["ddim", 40] < 2.5, (schedule, err)
        assert err["dpmpp2m", 10] / err["dpmpp2m", 40] > 12, (schedule, err)  # 4² would be exact second order
        assert all(err["dpmpp2m", n] < 0.7 * err["ddim", n] for n in (10, 20, 40)), (schedule, err)
        if schedule == "cosine":  # the default schedule: a tenth of DDIM's error from 20 steps
            assert err["dpmpp2m", 20] < 0.1 * err["ddim", 20], err


def test_the_solvers_table_is_ddims_without_t0_as_diffusers_spaces_it():
    for n in (1, 10, 15, 50):
        table = dpm_solver_timesteps(1000, n)
        assert table.tolist() == ddim_timesteps(1000, n + 1).tolist()[:-1] and len(table) == n and table[-1] > 0
    diffusers = pytest.importorskip("diffusers")  # the peer's convention: "linspace" spacing, the last sigma 0
    scheduler = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000, timestep_spacing="linspace")
    for n in (10, 15, 20):
        scheduler.set_timesteps(n)
        assert scheduler.timesteps.tolist() == dpm_solver_timesteps(1000, n).tolist()
    with pytest.raises(ValueError, match="less one"):
        dpm_solver_timesteps(1000, 1000)


def test_first_step_equals_ddims_and_the_table_runs_down_in_range():
    diffusion = GaussianDiffusion(
        timesteps=1000, schedule="linear", beta_start=1e-4, beta_end=0.02, prediction="epsilon"
    )
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


def test_sample_py_names_the_solver_and_its_steps(tmp_path, capsys):
    import os

    import sample

    fixture = os.path.join(os.path.dirname(__file__), "data", "ckpt-format1-pre-layout.pt")  # 20 TIMESTEPS
    out = tmp_path / "grid.png"
    sample.main(
        [
            "--prompt",
            "a red circle on a blue background",
            "--n",
            "1",
            "--ckpt",
            fixture,
            "--sampler",
            "dpmpp2m",
            "--steps",
            "3",
            "--out",
            str(out),
        ]
    )
    assert "(dpmpp2m, 3 steps," in capsys.readouterr().out and out.stat().st_size > 0  # not the 20 TIMESTEPS


def test_the_sde_step_at_eta_0_is_the_ode_step_and_keeps_q_of_x_t_given_x_0_at_any_eta():
    """SDE-DPM-Solver++(2M) at η = 0 is DPM-Solver++(2M), bit for bit. With the exact data prediction of a point
    mass x_0 = c, one step of any η maps x_s ~ N(α_s·c, σ_s²) onto N(α_t·c, σ_t²), whatever the step's size, and
    keeps e^{−ηh} of x_s's noise (correlation), the rest fresh: the closed form of the SDE step (ddpm/model/diffusion.py)."""
    diffusion = GaussianDiffusion(
        timesteps=1000, schedule="cosine", beta_start=1e-4, beta_end=0.02, prediction="epsilon"
    )
    g = torch.Generator().manual_seed(0)
    x, noise = torch.randn(4, 3, 4, 4, generator=g), torch.randn(4, 3, 4, 4, generator=g)
    x0 = torch.randn(4, 3, 4, 4, generator=g)
    ode, prev = diffusion.dpmpp2m_step(x, 900, 700, x0, None)
    sde, _ = diffusion.dpmpp2m_step(x, 900, 700, x0, None, eta=0.0, noise=noise)
    assert torch.equal(ode, sde)
    assert torch.equal(
        diffusion.dpmpp2m_step(ode, 700, 500, x0, prev)[0],
        diffusion.dpmpp2m_step(ode, 700, 500, x0, prev, eta=0.0, noise=noise)[0],
    )

    c, n = 0.4, 200_000
    for s, t in ((999, 500), (500, 450), (300, 20)):
        for eta in (0.25, 0.5, 1.0):
            a_s, a_t = diffusion.alphas_cumprod[s], diffusion.alphas_cumprod[t]
            x_s = a_s.sqrt() * c + (1 - a_s).sqrt() * torch.randn(n, generator=g).view(n, 1, 1, 1)
            z = torch.randn(n, generator=g).view(n, 1, 1, 1)
            x_t, _ = diffusion.dpmpp2m_step(x_s, s, t, torch.full_like(x_s, c), None, eta=eta, noise=z)
            mean, std = x_t.mean().item(), x_t.std().item()
            assert abs(mean - a_t.sqrt().item() * c) < 0.01 and abs(std / (1 - a_t).sqrt().item() - 1) < 0.01, (
                s,
                t,
                eta,
                mean,
                std,
            )
            # What the step keeps of x_s's noise: all of it on the ODE (η = 0), e^{−ηh} of it here.
            h = 0.5 * ((a_t / (1 - a_t)).log() - (a_s / (1 - a_s)).log())
            kept = torch.corrcoef(torch.stack([x_s.flatten(), x_t.flatten()]))[0, 1].item()
            assert abs(kept - torch.exp(-eta * h).item()) < 0.01, (s, t, eta, kept)


def test_the_sde_solver_draws_the_gaussian_datas_spread_where_ddim_shrinks_it():
    """On Gaussian data with the exact denoiser, 20 SDE-DPM-Solver++(2M) steps at η 0.5 and 1 draw samples whose
    mean (within 0.015, five standard errors) and spread (within 3 %) are the data's, N(MU, S²) clamped to [-1, 1]
    as the sampler returns it; DDIM at η 0.5 draws them more than 5 % narrower at 10 and 20 steps (first order:
    0.40 and 0.43 against 0.46), the solver less than half as far off. The same seed gives the same samples."""
    diffusion = GaussianDiffusion(
        timesteps=1000, schedule="cosine", beta_start=1e-4, beta_end=0.02, prediction="epsilon"
    )
    data = (MU + S * torch.randn(2_000_000, generator=torch.Generator().manual_seed(1))).clamp(-1, 1)

    def draw(sampler, steps, eta, seed=0):
        return run(diffusion, sampler, steps, seed, eta=eta, n=512)

    for eta in (0.5, 1.0):
        x = draw("dpmpp2m_sde", 20, eta)
        assert abs(x.mean() - data.mean()) < 0.015 and abs(x.std() / data.std() - 1) < 0.03, (eta, x.std())
    for steps in (10, 20):
        sde, ddim = (abs(draw(name, steps, 0.5).std() / data.std() - 1) for name in ("dpmpp2m_sde", "ddim"))
        assert ddim > 0.05 and sde < 0.5 * ddim, (steps, sde, ddim)
    assert torch.equal(draw("dpmpp2m_sde", 5, 0.5), draw("dpmpp2m_sde", 5, 0.5))
    assert not torch.equal(draw("dpmpp2m_sde", 5, 0.5), draw("dpmpp2m_sde", 5, 0.5, seed=1))
