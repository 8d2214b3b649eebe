"""Prompts in, images out: the text encoder, the UNet and the diffusion, built from their constructor arguments.

From Python::

    from ddpm import Pipeline
    pipe = Pipeline.from_pretrained("runs/my-run")          # a run folder, a checkpoint .pt or an export .safetensors
    images = pipe(["a red circle on a blue background"])     # PIL images, with the checkpoint's own sampling settings
    images = pipe(["a green star"] * 4, guidance_scale=5, num_steps=20, seed=1)   # any Sampling field overridden
    tensor = pipe(["a green star"], output_type="pt")        # (N, 3, H, W) in [-1, 1]

``from_pretrained`` rebuilds every component from the file alone (never from today's config.py), samples with
the EMA weights by default, and runs on the device training would pick (CUDA where present, else the CPU).
``train.py`` builds the same object around its EMA modules to draw the sample grids, so the two paths cannot
drift apart. A checkpoint whose recorded constructor arguments contradict its weights is refused with one
``CheckpointError`` naming the keys and shapes that differ.
"""

import os

import numpy as np
import torch
from PIL import Image

from ddpm.model.diffusion import make_diffusion
from ddpm.model.text import build_text_encoder, tokenizer_for
from ddpm.model.unet import UNet
from ddpm.run.checkpoint import CheckpointError, load_weights, sampling_of
from ddpm.run.export import load_model
from ddpm.run.folder import checkpoint_at
from ddpm.run.hardware import autocast, default_device, memory_format, resolve_precision
from ddpm.run.sampling import Sampling

OUTPUT_TYPES = ("pil", "pt")


def _build(path: str, args_name: str, build, args: dict):
    """``build(**args)``, or a CheckpointError when the recorded arguments cannot build the component."""
    try:
        return build(**args)
    except (TypeError, ValueError, KeyError, AssertionError) as err:
        raise CheckpointError(
            f"{path}: inconsistent checkpoint, its {args_name} cannot build the model "
            f"({type(err).__name__}: {err}); use another checkpoint"
        ) from None


def to_pil(images: torch.Tensor) -> list:
    """(N, 3, H, W) in [-1, 1] → N RGB PIL images."""
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(p), "RGB") for p in pixels]


class Pipeline:
    def __init__(
        self,
        *,
        unet,
        text_encoder,
        tokenizer,
        diffusion,
        image_size: int,
        sampling: Sampling,
        precision: str,
        channels_last: bool,
        config: dict,
        device="cpu",
    ):
        self.unet, self.text_encoder, self.tokenizer, self.diffusion = unet, text_encoder, tokenizer, diffusion
        self.image_size, self.sampling, self.channels_last, self.config = image_size, sampling, channels_last, config
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)  # "auto" → what this device runs fast (ADR 0035)

    @classmethod
    def from_pretrained(cls, path: str, *, device=None, use_ema: bool = True, precision: str = None) -> "Pipeline":
        """A run folder (its newest checkpoint that loads), a training checkpoint (.pt) or an export (.safetensors)."""
        found, ckpt = checkpoint_at(os.fspath(path), load=load_model)
        return cls.from_checkpoint(found, device=device, use_ema=use_ema, checkpoint=ckpt, precision=precision)

    @classmethod
    def from_checkpoint(
        cls, path: str, *, use_ema: bool = True, device=None, checkpoint: dict = None, precision: str = None
    ) -> "Pipeline":
        """``precision`` overrides the checkpoint's ("auto", "fp32" or "bf16"); ``device`` None: training's choice."""
        ckpt = checkpoint if checkpoint is not None else load_model(path)  # a .pt checkpoint or a .safetensors export
        prefix = "ema_" if use_ema else ""
        unet = _build(path, "unet_args", UNet, ckpt["unet_args"])
        load_weights(path, "unet_args", unet, ckpt.get(prefix + "unet"))
        text_state = ckpt.get(prefix + "text_encoder")  # None: a frozen pretrained tower, not stored
        text_encoder = _build(
            path,
            "text_args",
            build_text_encoder,  # stored weights need no pretrained ones first
            {**ckpt["text_args"], "load_pretrained": text_state is None},
        )
        if text_state is not None:
            load_weights(path, "text_args", text_encoder, text_state)
        speed = ckpt["sampling"]
        device = torch.device(device) if device is not None else default_device()
        unet.to(device, memory_format=memory_format(speed.get("channels_last", False))).eval()
        text_encoder.to(device).eval()
        return cls(
            unet=unet,
            text_encoder=text_encoder,
            tokenizer=tokenizer_for(ckpt["text_args"]),
            diffusion=make_diffusion(**ckpt["diffusion_args"]).to(device),
            sampling=sampling_of(ckpt),
            image_size=ckpt["unet_args"]["image_size"],
            precision=precision or speed.get("precision", "fp32"),
            channels_last=speed.get("channels_last", False),
            config=ckpt["config"],
            device=device,
        )

    def _eps(self, x, t, context, mask):
        return self.unet(x.contiguous(memory_format=memory_format(self.channels_last)), t, context, mask)

    def settings(self, **overrides) -> Sampling:
        """This pipeline's sampling settings with ``overrides`` (Sampling fields; None keeps a field), checked."""
        sampling = self.sampling.replace(**overrides)
        problems = sampling.problems(self.diffusion.timesteps, objective=self.diffusion.objective)
        if problems:
            raise ValueError("; ".join(problems))
        return sampling

    @torch.no_grad()
    def generate(
        self, prompts: list, *, seed: int = 0, batch_size: int = 64, progress=None, **overrides
    ) -> torch.Tensor:
        """Images (N, 3, H, W) in [-1, 1] for N prompts; the same seed gives the same images. ``overrides``:
        guidance_scale, num_steps, sampler, eta, clip_x0 (default: this pipeline's ``sampling``)."""
        if not prompts:
            raise ValueError("generate() needs at least one prompt")
        wrong = [f"prompt {i} is {p!r}" for i, p in enumerate(prompts) if not isinstance(p, str)]
        if wrong:
            raise TypeError(f"every prompt must be a string: {'; '.join(wrong[:3])}")
        s = self.settings(**overrides)
        tokens, mask = self.tokenizer(prompts)
        null_tokens, null_mask = self.tokenizer([""])
        generator = torch.Generator(self.device).manual_seed(seed)
        out = []
        with autocast(self.precision, self.device):
            null_ctx = self.text_encoder(null_tokens.to(self.device))
            for i in range(0, len(prompts), batch_size):
                tok, m = tokens[i : i + batch_size].to(self.device), mask[i : i + batch_size].to(self.device)
                out.append(
                    self.diffusion.sample(
                        self._eps,
                        (len(tok), 3, self.image_size, self.image_size),
                        context=self.text_encoder(tok),
                        context_mask=m,
                        null_context=null_ctx,
                        null_mask=null_mask.to(self.device),
                        guidance_scale=s.guidance_scale,
                        sampler=s.sampler,
                        num_steps=s.num_steps,
                        eta=s.eta,
                        clip_x0=s.clip_x0,
                        generator=generator,
                        progress=progress,
                    ).float()
                )
        return torch.cat(out)

    def __call__(self, prompts, *, seed: int = 0, output_type: str = "pil", **overrides):
        """PIL images (``output_type="pil"``) or the (N, 3, H, W) tensor in [-1, 1] (``"pt"``) for a prompt or a
        list of prompts, drawn with this pipeline's sampling settings unless overridden."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type={output_type!r}: one of {', '.join(map(repr, OUTPUT_TYPES))}")
        images = self.generate([prompts] if isinstance(prompts, str) else list(prompts), seed=seed, **overrides)
        return to_pil(images) if output_type == "pil" else images
