"""Flow matching on the straight path (rectified flow): the objective, and its Euler and Heun samplers.

Lipman et al. 2023, "Flow Matching for Generative Modeling", and Liu et al. 2023, "Flow Straight and Fast"
(rectified flow), in the convention of Esser et al. 2024 (SD3, §2): the path from data to noise is
x_t = (1 − t)·x_0 + t·ε, t ∈ [0, 1], whose velocity is dx_t/dt = ε − x_0. The network predicts that velocity,
v_θ(x_t, t) (conditional flow matching: the loss ‖v_θ − (ε − x_0)‖² has the marginal field as its minimiser), and
sampling integrates dx/dt = v from t = 1 (noise) to 0 with Euler steps or Heun's second-order ones (Karras et al.
2022, Algorithm 1, without its noise injection). Guidance combines the conditional and unconditional
velocities as ε-predictions are combined: v_u + s·(v_c − v_u); clipping clamps x̂_0 = x_t − t·v to [-1, 1].

Same calls as ``GaussianDiffusion`` where training and sampling meet it: ``loss_per_sample``, ``min_snr_weights``
(all ones: the velocity loss has no SNR weighting here), ``sample``, ``to``. The network's time input is t·T on
the same scale as the discrete schedules' steps (T = ``timesteps``), so the UNet is the same.
"""

from typing import Callable, Optional

import torch
import torch.nn.functional as F

FLOW_SAMPLERS = ("euler", "heun")


class FlowMatching:
    def __init__(self, *, timesteps: int, objective: str = "flow", **_unused):
        if objective != "flow":
            raise ValueError(f"objective {objective!r}: FlowMatching is 'flow'")
        self.timesteps = timesteps  # the time input's scale, and the most sampling steps
        self.objective = objective

    def to(self, device) -> "FlowMatching":
        return self

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        """t ∈ [0, 1] as the network's time input: t·T, on the discrete schedules' scale."""
        return t * self.timesteps

    @staticmethod
    def path(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = (1 − t)·x_0 + t·ε; x0, noise (B,C,H,W), t (B,) in [0, 1]."""
        t = t.view(-1, 1, 1, 1)
        return (1 - t) * x0 + t * noise

    def loss_per_sample(self, model: Callable, x0, t, noise, context, context_mask) -> torch.Tensor:
        """‖v_θ(x_t, t) − (ε − x_0)‖², averaged over pixels, shape (B,), float32 (conditional flow matching)."""
        out = model(self.path(x0, t, noise), self.model_time(t), context, context_mask)
        return F.mse_loss(out.float(), noise - x0, reduction="none").mean(dim=(1, 2, 3))

    def min_snr_weights(self, t: torch.Tensor, gamma: float) -> torch.Tensor:
        return torch.ones(t.shape, device=t.device)

    def quartile(self, t: torch.Tensor) -> torch.Tensor:
        """Which quarter of the path t lies in (0 = nearest the data), for the loss-by-timestep logs."""
        return (t * 4).long().clamp(0, 3)

    @torch.no_grad()
    def sample(
        self,
        model: Callable,
        shape: tuple,
        *,
        context: torch.Tensor,
        context_mask: torch.Tensor,
        null_context: Optional[torch.Tensor],
        null_mask: Optional[torch.Tensor],
        guidance_scale: float,
        sampler: str,
        num_steps: int,
        eta: float = 0.0,
        clip_x0: bool = False,
        generator: Optional[torch.Generator] = None,
        progress: Optional[Callable] = None,
    ) -> torch.Tensor:
        """Images of ``shape`` (B,C,H,W): x_1 ~ N(0, I) integrated to t = 0 in ``num_steps`` steps of equal length
        (``sampler`` "euler" or "heun"; Heun's last step, into t = 0, is an Euler step as in EDM Algorithm 1)."""
        if sampler not in FLOW_SAMPLERS:
            raise ValueError(f"sampler {sampler!r}: flow matching samples with {', '.join(FLOW_SAMPLERS)}")
        b, guided = shape[0], guidance_scale != 1.0
        ctx = torch.cat([context, null_context.expand(b, -1, -1)]) if guided else context
        mask = torch.cat([context_mask, null_mask.expand(b, -1)]) if guided else context_mask

        def velocity(x, t: float):
            tt = torch.full((b,), t, device=x.device)
            if guided:
                v_c, v_u = model(torch.cat([x, x]), self.model_time(torch.cat([tt, tt])), ctx, mask).float().chunk(2)
                v = v_u + guidance_scale * (v_c - v_u)
            else:
                v = model(x, self.model_time(tt), ctx, mask).float()
            if clip_x0 and t > 0:  # x̂_0 = x_t − t·v, clamped; the velocity that leads there from x_t
                v = (x - (x - t * v).clamp(-1, 1)) / t
            return v

        x = torch.randn(shape, generator=generator, device=context.device)
        times = torch.linspace(1.0, 0.0, num_steps + 1).tolist()
        steps = list(range(num_steps))
        for i in progress(steps) if progress else steps:
            t, t_next = times[i], times[i + 1]
            v = velocity(x, t)
            x_euler = x + (t_next - t) * v
            if sampler == "heun" and t_next > 0:
                x = x + (t_next - t) * 0.5 * (v + velocity(x_euler, t_next))
            else:
                x = x_euler
        return x.clamp(-1, 1)
