"""Prompts in, images out: the text encoder, the UNet and the diffusion, built from their constructor arguments.

``Pipeline.from_checkpoint(path)`` rebuilds every component from the checkpoint (or exported model) alone (never from today's
config.py) and samples with the EMA weights by default. ``train.py`` builds the same object around its EMA
modules to draw the sample grids, so the two paths cannot drift apart. A checkpoint whose recorded constructor
arguments contradict its weights is refused with one ``CheckpointError`` naming the keys and shapes that differ.
"""

import contextlib
import logging
import warnings

import torch

from ddpm.run.checkpoint import CheckpointError
from ddpm.run.export import load_model
from ddpm.run.sampling_args import PRECISIONS
from ddpm.model.diffusion import GaussianDiffusion
from ddpm.model.text import build_text_encoder, tokenizer_for
from ddpm.model.unet import UNet


def bf16_is_native(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware: a CUDA card that supports it, or a CPU that oneDNN has bf16
    kernels for (AVX-512 or AMX). Elsewhere (a CPU with AVX2 alone) torch emulates bf16, and the default UNet's
    training step ran 11× slower in bf16 autocast than in fp32 (ADR 0035)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision to compute in: "auto" becomes "bf16" where the device has it natively, else "fp32".

    An explicit "bf16" is kept where it is emulated, with a warning that names the cost and the way out. The
    warning is issued from one place with one text per device, so Python's default filter shows it once per
    process, though train.py and its preview pipeline both resolve the precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: allowed: {', '.join(map(repr, PRECISIONS))}")
    device = torch.device(device)
    native = bf16_is_native(device)
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and not native:
        if device.type == "cpu":  # measured: ADR 0035
            why = (f"this CPU (capability {torch.backends.cpu.get_cpu_capability()}) has no bf16 in hardware, and "
                   "the default UNet trained about 10x slower in bf16 than in fp32 on one (ADR 0035)")
        else:  # not measured here: say what is known and no more
            why = f"this {device.type} device reports no native bf16, so bf16 is emulated and likely slower than fp32"
        warnings.warn(f"PRECISION = \"bf16\": {why}. Use \"auto\" or \"fp32\" (PRECISION in config.py, "
                      "--set PRECISION=auto, or sample.py --precision auto).")
    return precision


def describe_hardware(device: torch.device) -> str:
    """What computed a run, for reading its img/s beside others': "NVIDIA H200", "AMD EPYC (AVX2), 2 threads"."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return device.type
    model = ""
    with contextlib.suppress(OSError, UnicodeDecodeError):  # Linux; elsewhere the capability alone
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    return (f"{model} " if model else "") + f"({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads"


def autocast(precision: str, device: torch.device):
    """bf16 autocast (weights stay fp32) or nothing; ``precision`` is resolved (not "auto")."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(channels_last: bool):
    return torch.channels_last if channels_last else torch.contiguous_format


class CompiledOrEager:
    """Calls ``torch.compile(module)``; if the first call fails, warns once and calls ``module`` eagerly from then on.

    Compiling happens at the first call, and it can fail for reasons outside the model: no C++ compiler on
    the machine (inductor's CPU backend needs one), an unsupported platform. A run should then go on,
    slower, rather than stop. Once a compiled call has succeeded, errors are real and propagate. The module
    itself (its parameters, ``state_dict()`` without an ``_orig_mod.`` prefix) stays the one to save and load.
    """

    def __init__(self, module, *, enabled: bool, warn=print):
        self.module, self.warn = module, warn
        self.compiled = torch.compile(module) if enabled else None
        if enabled and not torch.cuda.is_available():  # torch's CUDA wheels say so when inductor loads on a CPU box
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        self.proven = False

    def __call__(self, *args, **kwargs):
        if self.compiled is None:
            return self.module(*args, **kwargs)
        if self.proven:
            return self.compiled(*args, **kwargs)
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - any failure to compile means: go on eagerly
            self.warn(f"torch.compile failed ({type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}); "
                      "training goes on without it, slower. Set COMPILE = False (an ADR) or --set COMPILE=False "
                      "to skip the attempt; inductor on CPU needs a C++ compiler (g++ or clang++ on PATH, or $CXX).")
            self.compiled = None
            return self.module(*args, **kwargs)
        self.proven = True
        return out


def _build(path: str, args_name: str, build, args: dict):
    """``build(**args)``, or a CheckpointError when the recorded arguments cannot build the component."""
    try:
        return build(**args)
    except (TypeError, ValueError, KeyError, AssertionError) as err:
        raise CheckpointError(f"{path}: inconsistent checkpoint, its {args_name} cannot build the model "
                              f"({type(err).__name__}: {err}); use another checkpoint") from None


def _load_weights(path: str, args_name: str, module: torch.nn.Module, state) -> None:
    """``module.load_state_dict(state)``, or one CheckpointError listing the keys and shapes that disagree
    (rather than torch's many-line ``size mismatch`` report)."""
    expected = module.state_dict()
    state = state if isinstance(state, dict) else {}
    problems = [f"{k}: {tuple(state[k].shape)} in the weights, {tuple(v.shape)} from {args_name}"
                for k, v in expected.items() if k in state and getattr(state[k], "shape", None) != v.shape]
    problems += [f"{k}: missing from the weights" for k in expected if k not in state]
    problems += [f"{k}: in the weights, not in a model built from {args_name}" for k in state if k not in expected]
    if problems:
        more = f"; and {len(problems) - 2} more" if len(problems) > 2 else ""
        raise CheckpointError(f"{path}: inconsistent checkpoint, its recorded {args_name} do not match its weights "
                              f"({'; '.join(problems[:2])}{more}); use another checkpoint")
    module.load_state_dict(state)


class Pipeline:
    def __init__(self, *, unet, text_encoder, tokenizer, diffusion, image_size: int, precision: str,
                 channels_last: bool, config: dict, device="cpu"):
        self.unet, self.text_encoder, self.tokenizer, self.diffusion = unet, text_encoder, tokenizer, diffusion
        self.image_size, self.channels_last, self.config = image_size, channels_last, config
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)  # "auto" → what this device runs fast (ADR 0035)

    @classmethod
    def from_checkpoint(cls, path: str, *, use_ema: bool = True, device="cpu", checkpoint: dict = None,
                        precision: str = None) -> "Pipeline":
        """``precision`` overrides the checkpoint's ("auto", "fp32" or "bf16")."""
        ckpt = checkpoint if checkpoint is not None else load_model(path)  # a .pt checkpoint or a .safetensors export
        prefix = "ema_" if use_ema else ""
        unet = _build(path, "unet_args", UNet, ckpt["unet_args"])
        _load_weights(path, "unet_args", unet, ckpt.get(prefix + "unet"))
        text_state = ckpt.get(prefix + "text_encoder")  # None: a frozen pretrained tower, not stored
        text_encoder = _build(path, "text_args", build_text_encoder,  # stored weights need no pretrained ones first
                              {**ckpt["text_args"], "load_pretrained": text_state is None})
        if text_state is not None:
            _load_weights(path, "text_args", text_encoder, text_state)
        sampling = ckpt["sampling"]
        device = torch.device(device)
        unet.to(device, memory_format=memory_format(sampling["channels_last"])).eval()
        text_encoder.to(device).eval()
        return cls(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer_for(ckpt["text_args"]),
                   diffusion=GaussianDiffusion(**ckpt["diffusion_args"]).to(device),
                   image_size=ckpt["unet_args"]["image_size"], precision=precision or sampling["precision"],
                   channels_last=sampling["channels_last"], config=ckpt["config"], device=device)

    def _eps(self, x, t, context, mask):
        return self.unet(x.contiguous(memory_format=memory_format(self.channels_last)), t, context, mask)

    @torch.no_grad()
    def generate(self, prompts: list, *, guidance_scale: float, num_steps: int, sampler: str = "ddim",
                 eta: float = 0.0, seed: int = 0, batch_size: int = 64, clip_x0: bool = True,
                 progress=None) -> torch.Tensor:
        """Images (N, 3, H, W) in [-1, 1] for N prompts; the same seed gives the same images."""
        if not prompts:
            raise ValueError("generate() needs at least one prompt")
        tokens, mask = self.tokenizer(prompts)
        null_tokens, null_mask = self.tokenizer([""])
        generator = torch.Generator(self.device).manual_seed(seed)
        out = []
        with autocast(self.precision, self.device):
            null_ctx = self.text_encoder(null_tokens.to(self.device))
            for i in range(0, len(prompts), batch_size):
                tok, m = tokens[i : i + batch_size].to(self.device), mask[i : i + batch_size].to(self.device)
                out.append(self.diffusion.sample(
                    self._eps, (len(tok), 3, self.image_size, self.image_size),
                    context=self.text_encoder(tok), context_mask=m,
                    null_context=null_ctx, null_mask=null_mask.to(self.device),
                    guidance_scale=guidance_scale, sampler=sampler, num_steps=num_steps, eta=eta,
                    clip_x0=clip_x0, generator=generator, progress=progress,
                ).float())
        return torch.cat(out)
