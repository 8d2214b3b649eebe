"""Gaussian diffusion: noise schedules, the forward process, the ε-loss and the samplers.

Equations cite Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (DDPM), Nichol & Dhariwal 2021,
"Improved DDPM" (cosine schedule), Song et al. 2021, "Denoising Diffusion Implicit Models" (DDIM), and
Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", and Lu et al. 2022, "DPM-Solver++: Fast Solver for
Guided Sampling of Diffusion Probabilistic Models" (DPM-Solver++), Salimans & Ho 2022, "Progressive Distillation
for Fast Sampling of Diffusion Models" (v-prediction, their §4 and appendix D), Guttenberg 2023, "Diffusion
with Offset Noise", and Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models"
(EDM: the preconditioning of their Table 1, in this variance-preserving schedule's σ_t = √((1−ᾱ_t)/ᾱ_t)).

The network is an argument, never a member: ``eps = model(x_t, t, context, context_mask)`` so that the
maths here can be tested with a dummy function. Images live in [-1, 1].
This module does not train and does not know about text; it holds no hyperparameter defaults.
"""

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ddpm.model.flow import FLOW_SAMPLERS, FlowMatching

# eps = model(x_t (B,C,H,W), t (B,) long, context (B,L,D), context_mask (B,L) bool) -> (B,C,H,W)
EpsModel = Callable[..., torch.Tensor]

SCHEDULES = ("linear", "cosine")
GAUSSIAN_SAMPLERS = ("ddim", "ddpm", "dpmpp2m", "dpmpp2m_sde")
DPM_SOLVERS = ("dpmpp2m", "dpmpp2m_sde")  # DPM-Solver++(2M) and its SDE form, on dpm_solver_timesteps
ETA_SAMPLERS = ("ddim", "dpmpp2m_sde")  # the samplers whose stochasticity η (DDIM_ETA) sets
SAMPLERS = GAUSSIAN_SAMPLERS + FLOW_SAMPLERS  # "euler" and "heun" integrate flow matching's ODE (ddpm.model.flow)
OBJECTIVES = ("ddpm", "flow")  # Gaussian diffusion, or flow matching on the straight path
PREDICTIONS = ("epsilon", "v", "edm")  # the network's output: ε; v = √ᾱ·ε − √(1−ᾱ)·x_0; EDM's F (Karras et al. 2022)


def samplers_for(objective: str) -> tuple:
    """The samplers that draw from a model of ``objective``: Gaussian diffusion's, or flow matching's ODE solvers."""
    return FLOW_SAMPLERS if objective == "flow" else GAUSSIAN_SAMPLERS


def make_betas(schedule: str, timesteps: int, *, beta_start: float, beta_end: float) -> torch.Tensor:
    """β_1..β_T as float64, shape (T,).

    linear: DDPM §4, β from ``beta_start`` to ``beta_end``.
    cosine: Improved DDPM eq. 17, ᾱ_t = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s)·π/2), s = 0.008,
            β_t = 1 − ᾱ_t/ᾱ_{t−1} clipped at 0.999 (their §3.2); ``beta_start``/``beta_end`` are unused.
    """
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    if schedule == "cosine":
        s = 0.008
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        alphas_cumprod = f / f[0]
        return (1 - alphas_cumprod[1:] / alphas_cumprod[:-1]).clamp(max=0.999)
    raise ValueError(f"unknown beta schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")


def ddim_timesteps(timesteps: int, num_steps: int) -> torch.Tensor:
    """The DDIM sub-sequence τ, strictly decreasing from T−1 down to 0, shape (num_steps,).

    Evenly spaced over [0, T−1] (DDIM §4.2, "linear" τ); both ends are always included so that the
    sampler starts from pure noise and ends on a clean image.
    """
    if not 1 <= num_steps <= timesteps:
        raise ValueError(f"num_steps={num_steps} must be in [1, {timesteps}] (the number of training timesteps)")
    if num_steps == 1:
        return torch.tensor([timesteps - 1])
    table = torch.linspace(0, timesteps - 1, num_steps, dtype=torch.float64).round().long()
    return table.flip(0)


def max_sampling_steps(sampler: str, timesteps: int) -> int:
    """The most steps ``sampler`` can take on a schedule of ``timesteps``: DPM-Solver++'s table leaves out t = 0."""
    return timesteps - 1 if sampler in DPM_SOLVERS else timesteps


def dpm_solver_timesteps(timesteps: int, num_steps: int) -> torch.Tensor:
    """DPM-Solver++'s table, strictly decreasing from T−1, shape (num_steps,): the DDIM table of num_steps + 1
    points without its t = 0, so the last step goes from its smallest t straight to the clean image, first order
    (diffusers' "linspace" spacing with ``final_sigmas_type="zero"``).

    Why not DDIM's table: with the cosine schedule λ jumps from 2.1 to 5.0 between t = 71 and 0 (15 steps) against
    0.3-0.4 per step before, so the step into t = 0 has r = h_prev/h ≈ 0.13 and the multistep correction weighs
    the previous data prediction by 1/(2r) ≈ 3.8: it overshoots. On the Gaussian toy this one step was most of the
    solver's error, at 50 steps too (ADR 0045).
    """
    if not 1 <= num_steps <= max_sampling_steps("dpmpp2m", timesteps):
        raise ValueError(f"num_steps={num_steps} must be in [1, {timesteps - 1}] (the training timesteps less one)")
    return ddim_timesteps(timesteps, num_steps + 1)[:-1]


def edm_coefficients(sigma: torch.Tensor, sigma_data: float) -> tuple:
    """EDM's preconditioning (Karras et al. 2022, Table 1): c_skip = σ_d²/(σ² + σ_d²), c_out = σ·σ_d/√(σ² + σ_d²),
    c_in = 1/√(σ² + σ_d²), c_noise = ¼·ln σ. As σ → 0, D(x) = c_skip·x + c_out·F → x; as σ → ∞, c_skip → 0 and
    c_out → σ_d: the network's output alone is the estimate of x_0."""
    root = (sigma**2 + sigma_data**2).sqrt()
    return sigma_data**2 / root**2, sigma * sigma_data / root, 1 / root, sigma.log() / 4


def make_noise(shape: tuple, offset: float, generator: torch.Generator, device=None) -> torch.Tensor:
    """Training noise ε (B,C,H,W): N(0, I), plus ``offset``·N(0, 1) per (image, channel) when offset > 0
    (offset noise, Guttenberg 2023), so the model learns to change an image's mean colour. Offset 0 draws nothing
    extra (the random stream stays as it was)."""
    noise = torch.randn(shape, generator=generator, device=device)
    if offset > 0:
        noise = noise + offset * torch.randn((*shape[:2], 1, 1), generator=generator, device=device)
    return noise


def guided_eps(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022 eq. 6, written as in Imagen/diffusers):
    ε̃ = ε_uncond + s·(ε_cond − ε_uncond). s = 1 is the plain conditional prediction, s = 0 unconditional.
    """
    return eps_uncond + scale * (eps_cond - eps_uncond)


class GaussianDiffusion:
    """Holds the schedule tensors (computed in float64, stored float32) and the diffusion maths.

    Not an ``nn.Module``: it has no parameters, and it is rebuilt from its constructor arguments, which a
    checkpoint stores. Call ``.to(device)`` to move the tables.
    """

    def __init__(
        self,
        *,
        timesteps: int,
        schedule: str,
        beta_start: float,
        beta_end: float,
        prediction: str,
        sigma_data: float = 0.5,
        objective: str = "ddpm",
    ):
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {prediction!r}; allowed: {', '.join(PREDICTIONS)}")
        if objective != "ddpm":
            raise ValueError(f"objective {objective!r} is not Gaussian diffusion's; build it with make_diffusion")
        self.timesteps, self.objective = timesteps, objective
        self.prediction, self.sigma_data = prediction, sigma_data
        betas = make_betas(schedule, timesteps, beta_start=beta_start, beta_end=beta_end)
        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, 0)
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        tables = {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
            "sigmas": ((1 - alphas_cumprod) / alphas_cumprod).sqrt(),  # EDM's σ_t of x_t/√ᾱ_t = x_0 + σ_t·ε
            # DDPM eq. 7: posterior q(x_{t-1} | x_t, x_0) = N(μ̃_t, β̃_t I).
            "posterior_variance": betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod),
            "posterior_mean_coef1": betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod),
            "posterior_mean_coef2": (1 - alphas_cumprod_prev) * alphas.sqrt() / (1 - alphas_cumprod),
        }
        for name, value in tables.items():
            setattr(self, name, value.float())

    def to(self, device) -> "GaussianDiffusion":
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
        return self

    @staticmethod
    def _at(table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """table[t] reshaped to (B, 1, 1, 1) for broadcasting over images."""
        return table[t].view(-1, 1, 1, 1)

    # ---- forward process and loss --------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """DDPM eq. 4: x_t = √ᾱ_t·x_0 + √(1−ᾱ_t)·ε. x0, noise (B,C,H,W); t (B,) in [0, T)."""
        return self._at(self.sqrt_alphas_cumprod, t) * x0 + self._at(self.sqrt_one_minus_alphas_cumprod, t) * noise

    def loss_per_sample(self, model: EpsModel, x0, t, noise, context, context_mask) -> torch.Tensor:
        """DDPM eq. 14 (L_simple): ‖ε − ε_θ(x_t, t)‖², averaged over pixels, shape (B,), float32; with
        v-prediction ‖v − v_θ‖², v = √ᾱ_t·ε − √(1−ᾱ_t)·x_0 (Salimans & Ho 2022, §4); with EDM ‖F_θ − F*‖², F* =
        (x_0 − c_skip·x)/c_out for x = x_0 + σ·ε: EDM eq. 8, whose weight λ(σ) = 1/c_out² makes it unit weight."""
        x_t = self.q_sample(x0, t, noise)
        out = model(self.network_input(x_t, t), t, context, context_mask)
        target = noise
        if self.prediction == "v":
            target = (
                self._at(self.sqrt_alphas_cumprod, t) * noise - self._at(self.sqrt_one_minus_alphas_cumprod, t) * x0
            )
        elif self.prediction == "edm":
            c_skip, c_out, _, _ = edm_coefficients(self._at(self.sigmas, t), self.sigma_data)
            target = (x0 - c_skip * (x0 + self._at(self.sigmas, t) * noise)) / c_out
        return F.mse_loss(out.float(), target, reduction="none").mean(dim=(1, 2, 3))

    def network_input(self, x_t, t: torch.Tensor) -> torch.Tensor:
        """What the network is given: x_t itself; with EDM, c_in·x = x_t/√(1 − ᾱ_t + ᾱ_t·σ_data²) (x = x_t/√ᾱ_t), the
        unit-variance input of EDM Table 1. The network's time input stays t, a monotone function of σ_t, in the
        place of c_noise = ¼·ln σ_t: the sinusoidal embedding is made for it."""
        if self.prediction != "edm":
            return x_t
        a = self._at(self.alphas_cumprod, t)
        return x_t / (1 - a + a * self.sigma_data**2).sqrt()

    def eps_from_output(self, x_t, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The network's output as ε: itself for ε-prediction; from v, ε = √ᾱ_t·v + √(1−ᾱ_t)·x_t (substitute
        x_t = √ᾱ·x_0 + √(1−ᾱ)·ε into v). Affine in ``out``, so guidance may combine either form. t (B,)."""
        if self.prediction == "epsilon":
            return out
        if self.prediction == "edm":  # x̂_0 = c_skip·x + c_out·F with x = x_t/√ᾱ, then ε from eq. 4
            c_skip, c_out, _, _ = edm_coefficients(self._at(self.sigmas, t), self.sigma_data)
            x0 = c_skip * x_t / self._at(self.sqrt_alphas_cumprod, t) + c_out * out
            return (x_t - self._at(self.sqrt_alphas_cumprod, t) * x0) / self._at(self.sqrt_one_minus_alphas_cumprod, t)
        return self._at(self.sqrt_alphas_cumprod, t) * out + self._at(self.sqrt_one_minus_alphas_cumprod, t) * x_t

    def quartile(self, t: torch.Tensor) -> torch.Tensor:
        """Which quarter of the schedule t lies in (0 = nearest the data), for the loss-by-timestep logs."""
        return (t * 4 // self.timesteps).clamp(max=3)

    def min_snr_weights(self, t: torch.Tensor, gamma: float) -> torch.Tensor:
        """Min-SNR-γ loss weights for ε-prediction (Hang et al. 2023, eq. 6 divided by SNR): min(SNR_t, γ)/SNR_t,
        SNR_t = ᾱ_t/(1 − ᾱ_t), shape (B,). Low-noise steps (SNR > γ) count less, so that the conflicting
        gradients of near-clean images do not slow the learning of structure. γ = 0 means no weighting (all 1).
        With v-prediction, ‖v − v_θ‖² = (SNR_t + 1)·‖x_0 − x̂_0‖² (where ‖ε − ε_θ‖² = SNR_t·‖x_0 − x̂_0‖²), so the
        same min(SNR_t, γ) weight on the x_0 error is min(SNR_t, γ)/(SNR_t + 1) (Hang et al. 2023, §3.4).
        """
        if gamma == 0 or self.prediction == "edm":  # EDM weighs its own loss (see loss_per_sample)
            return torch.ones(t.shape, device=t.device)
        snr = self.alphas_cumprod[t] / (1 - self.alphas_cumprod[t])
        return snr.clamp(max=gamma) / (snr + 1 if self.prediction == "v" else snr)

    # ---- reverse process -----------------------------------------------------------------------
    def predict_x0(self, x_t, t, eps) -> torch.Tensor:
        """Invert eq. 4: x̂_0 = (x_t − √(1−ᾱ_t)·ε) / √ᾱ_t."""
        return (x_t - self._at(self.sqrt_one_minus_alphas_cumprod, t) * eps) / self._at(self.sqrt_alphas_cumprod, t)

    def p_sample(self, x_t, t: torch.Tensor, eps, *, clip_x0: bool, noise: torch.Tensor) -> torch.Tensor:
        """One ancestral DDPM step x_t → x_{t−1} (Algorithm 2), with σ_t² = β̃_t.

        μ is the posterior mean μ̃(x̂_0, x_t) of eq. 7; without clipping it equals eq. 11,
        1/√α_t·(x_t − β_t/√(1−ᾱ_t)·ε). No noise is added at t = 0.
        """
        x0 = self.predict_x0(x_t, t, eps)
        if clip_x0:
            x0 = x0.clamp(-1, 1)
        mean = self._at(self.posterior_mean_coef1, t) * x0 + self._at(self.posterior_mean_coef2, t) * x_t
        nonzero = (t > 0).float().view(-1, 1, 1, 1)
        return mean + nonzero * self._at(self.posterior_variance, t).sqrt() * noise

    def ddim_step(self, x_t, t: int, t_prev: int, eps, *, eta: float, clip_x0: bool, noise) -> torch.Tensor:
        """DDIM eq. 12: x_{t'} = √ᾱ_{t'}·x̂_0 + √(1−ᾱ_{t'}−σ²)·ε + σ·z, with
        σ = η·√((1−ᾱ_{t'})/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_{t'}) (eq. 16). t' = −1 means ᾱ = 1 (the clean image).
        """
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[t_prev] if t_prev >= 0 else torch.ones_like(a_t)
        x0 = self.predict_x0(x_t, torch.full((x_t.shape[0],), t, device=x_t.device), eps)
        if clip_x0:
            x0 = x0.clamp(-1, 1)
            # Re-derive ε from the clipped x̂_0 so that the update stays on the DDIM trajectory.
            eps = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
        return a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps + sigma * noise

    def dpmpp2m_step(
        self, x_s, s: int, t: int, x0: torch.Tensor, previous: Optional[tuple], *, eta: float = 0.0, noise=None
    ) -> tuple:
        """One step s → t of DPM-Solver++(2M) (DPM-Solver++ Algorithm 2: multistep, second order, data prediction),
        or with ``eta`` > 0 of its SDE form (SDE-DPM-Solver++(2M): the same exponential integrator for the reverse
        SDE, as diffusers and k-diffusion implement it).

        With α = √ᾱ, σ = √(1−ᾱ), λ = log(α/σ) and h = λ_t − λ_s, the first-order update (their eq. 9, = DDIM with
        η = 0) is x_t = (σ_t/σ_s)·x_s − α_t·(e^{−h} − 1)·D, with D = x̂_0(x_s) the data prediction. From the second
        step on, D = (1 + 1/(2r))·x̂_0(x_s) − 1/(2r)·x̂_0(x_prev), r = h_prev/h (Algorithm 2, line 5), the
        multistep correction from the previous step's data prediction. ``previous`` is that (x̂_0, h) or None;
        t = −1 means ᾱ = 1 (σ = 0, λ = ∞): that last step is first order, x_t = x̂_0 (as DDIM's).

        The SDE form with strength η (k-diffusion's ``sample_dpmpp_2m_sde``; η = 1 is diffusers'
        "sde-dpmsolver++") is x_t = (σ_t/σ_s)·e^{−ηh}·x_s + α_t·(1 − e^{−(1+η)h})·D + σ_t·√(1 − e^{−2ηh})·z,
        z = ``noise``: η = 0 is the ODE step above; for any η, if x_s ~ q(x_s | x_0) and D = x_0, then x_t ~
        q(x_t | x_0) exactly (the mean α_t·x_0 and variance σ_t² are kept), so the added noise replaces what the
        step removed instead of piling up. Returns (x_t, (x0, h) for the next step). x_s, x0, noise (B,C,H,W).
        """
        if t < 0:
            return x0, None
        a_s, a_t = self.alphas_cumprod[s].double(), self.alphas_cumprod[t].double()
        lam_s, lam_t = 0.5 * (a_s / (1 - a_s)).log(), 0.5 * (a_t / (1 - a_t)).log()
        h = lam_t - lam_s
        d = x0
        if previous is not None:
            x0_prev, h_prev = previous
            r = h_prev / h
            d = (1 + 1 / (2 * r)).float() * x0 - (1 / (2 * r)).float() * x0_prev
        keep = ((1 - a_t) / (1 - a_s)).sqrt() * torch.exp(-eta * h)
        x_t = keep.float() * x_s - (a_t.sqrt() * torch.expm1(-(1 + eta) * h)).float() * d
        if eta > 0:
            x_t = x_t + ((1 - a_t) * -torch.expm1(-2 * eta * h)).sqrt().float() * noise
        return x_t, (x0, h)

    @torch.no_grad()
    def sample(
        self,
        model: EpsModel,
        shape: tuple,
        *,
        context: torch.Tensor,
        context_mask: torch.Tensor,
        null_context: Optional[torch.Tensor],
        null_mask: Optional[torch.Tensor],
        guidance_scale: float,
        sampler: str,
        num_steps: int,
        eta: float,
        clip_x0: bool,
        generator: Optional[torch.Generator],
        progress: Optional[Callable] = None,
    ) -> torch.Tensor:
        """Draw images of ``shape`` (B,C,H,W) in [-1, 1].

        context (B,L,D) / context_mask (B,L): the prompts; null_context/null_mask (1,L,D)/(1,L): the empty
        prompt, used for guidance when ``guidance_scale != 1``. sampler "ddpm" runs all T ancestral steps;
        "ddim" runs ``num_steps`` DDIM steps with stochasticity ``eta`` (η = 1 with all steps ≈ DDPM);
        "dpmpp2m" runs ``num_steps`` DPM-Solver++(2M) steps on ``dpm_solver_timesteps`` (deterministic, ``eta`` unused);
        "dpmpp2m_sde" its SDE form on the same table, with stochasticity ``eta``.
        """
        if sampler not in GAUSSIAN_SAMPLERS:
            raise ValueError(f"sampler {sampler!r}: Gaussian diffusion samples with {', '.join(GAUSSIAN_SAMPLERS)}")
        device = context.device
        b = shape[0]
        guided = guidance_scale != 1.0
        if guided:
            both_ctx = torch.cat([context, null_context.expand(b, -1, -1)])
            both_mask = torch.cat([context_mask, null_mask.expand(b, -1)])

        def eps_at(x, t_batch):
            if not guided:
                return self.eps_from_output(
                    x, t_batch, model(self.network_input(x, t_batch), t_batch, context, context_mask).float()
                )
            # One batched call for the conditional and unconditional branches.
            x_in = self.network_input(x, t_batch)
            eps = model(torch.cat([x_in, x_in]), torch.cat([t_batch, t_batch]), both_ctx, both_mask).float()
            eps_cond, eps_uncond = eps.chunk(2)
            return self.eps_from_output(x, t_batch, guided_eps(eps_cond, eps_uncond, guidance_scale))

        x = torch.randn(shape, generator=generator, device=device)
        if sampler == "ddpm":
            table = torch.arange(self.timesteps - 1, -1, -1)
        elif sampler in DPM_SOLVERS:
            table = dpm_solver_timesteps(self.timesteps, num_steps)
        else:
            table = ddim_timesteps(self.timesteps, num_steps)
        steps = table.tolist()
        iterator = progress(steps) if progress else steps
        previous = None  # DPM-Solver++'s (x̂_0, h) of the step before
        for i, t in enumerate(iterator):
            t_batch = torch.full((b,), t, device=device, dtype=torch.long)
            eps = eps_at(x, t_batch)
            noise = torch.randn(shape, generator=generator, device=device)
            if sampler == "ddpm":
                x = self.p_sample(x, t_batch, eps, clip_x0=clip_x0, noise=noise)
            elif sampler in DPM_SOLVERS:
                x0 = self.predict_x0(x, t_batch, eps)
                t_prev = steps[i + 1] if i + 1 < len(steps) else -1
                x0 = x0.clamp(-1, 1) if clip_x0 else x0
                sde_eta = eta if sampler in ETA_SAMPLERS else 0.0  # dpmpp2m is the solver's ODE form, η 0
                x, previous = self.dpmpp2m_step(x, t, t_prev, x0, previous, eta=sde_eta, noise=noise)
            else:
                t_prev = steps[i + 1] if i + 1 < len(steps) else -1
                x = self.ddim_step(x, t, t_prev, eps, eta=eta, clip_x0=clip_x0, noise=noise)
        return x.clamp(-1, 1)


def make_diffusion(**diffusion_args):
    """The process a checkpoint's ``diffusion_args`` describe: Gaussian diffusion (objective "ddpm", ADR 0003) or
    flow matching on the straight path ("flow", ddpm.model.flow)."""
    if diffusion_args.get("objective", "ddpm") == "flow":
        return FlowMatching(**diffusion_args)
    return GaussianDiffusion(**diffusion_args)
