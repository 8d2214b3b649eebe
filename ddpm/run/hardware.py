"""What the device computes, and how fast: native bf16, the precision "auto" resolves to, the memory layout, the
compile-or-eager wrapper, the default device, and a one-line description of the hardware for run records.

Training, sampling, the benchmark and the profiler all take these from here, so that "auto" means the same
device and precision everywhere (ADR 0035).
"""

import contextlib
import logging
import warnings

import torch

from ddpm.run.sampling import PRECISIONS


def default_device() -> torch.device:
    """The device a command picks when none is named, as training picks it: CUDA where present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
            why = (
                f"this CPU (capability {torch.backends.cpu.get_cpu_capability()}) has no bf16 in hardware, and "
                "the default UNet trained about 10x slower in bf16 than in fp32 on one (ADR 0035)"
            )
        else:  # not measured here: say what is known and no more
            why = f"this {device.type} device reports no native bf16, so bf16 is emulated and likely slower than fp32"
        warnings.warn(
            f'PRECISION = "bf16": {why}. Use "auto" or "fp32" (PRECISION in config.py, '
            "--set PRECISION=auto, or sample.py --precision auto)."
        )
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
    return (
        f"{model} " if model else ""
    ) + f"({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads"


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
            self.warn(
                f"torch.compile failed ({type(err).__name__}: {(str(err).splitlines() or [''])[0][:200]}); "
                "training goes on without it, slower. Set COMPILE = False (an ADR) or --set COMPILE=False "
                "to skip the attempt; inductor on CPU needs a C++ compiler (g++ or clang++ on PATH, or $CXX)."
            )
            self.compiled = None
            return self.module(*args, **kwargs)
        self.proven = True
        return out
