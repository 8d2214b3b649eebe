"""Timing on this machine: the matmul peak (fp32, bf16, TF32), round-robin timing of several variants in one
process (so that drift hits each alike), a sampling step's seconds, the device's name, and which precisions are
worth timing here. Used by ``make bench``.
"""

import os
import platform
import statistics
import time

import torch
import torch.nn as nn

from ddpm.measure.workload import sampling_step
from ddpm.run.hardware import bf16_is_native


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_size(device: torch.device, quick: bool) -> int:
    """n of the n³ peak matmul: large enough to reach the device's peak (8192 on a GPU, 2048 on a CPU)."""
    return 512 if quick else 8192 if device.type == "cuda" else 2048


def tf32_in_use(device: torch.device) -> bool:
    """Whether fp32 convolutions or matmuls on ``device`` run in TF32 (CUDA only; cuDNN's convolutions by default)."""
    return device.type == "cuda" and (torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)


def tf32_matmul_gflops(*, n: int, iters: int, device) -> float:
    """The fp32 matmul with TF32 allowed for the measurement (the setting is restored after)."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        return matmul_gflops(torch.float32, n=n, iters=iters, device=device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def matmul_gflops(dtype: torch.dtype, *, n: int = 2048, iters: int = 3, device="cpu") -> float:
    """GFLOP/s of an n×n by n×n ``torch.mm`` (2n³ FLOPs), median of ``iters`` after one warm-up."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = []
    for i in range(iters + 1):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def round_robin(steps: dict, *, warmup: int, iters: int, device) -> dict:
    """name → list of ``iters`` seconds; each round runs one iteration of every variant, in order."""
    device = torch.device(device)
    times = {name: [] for name in steps}
    for r in range(warmup + iters):
        for name, step in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def sampling_step_seconds(model: nn.Module, images: int, *, warmup: int, iters: int, device, **kwargs) -> float:
    """Median seconds of ``sampling_step(model, images, **kwargs)``."""
    step = sampling_step(model, images, device=device, **kwargs)
    seconds = round_robin({"sample": step}, warmup=warmup, iters=iters, device=device)["sample"]
    model.train()
    return statistics.median(seconds)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} logical CPUs"
    except OSError:
        pass
    return platform.processor() or platform.machine()


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def timed_precisions(precision_cfg: str, device: torch.device) -> tuple:
    """fp32 always; bf16 too where the device computes it natively or the config trains in it (see the docstring)."""
    return ("fp32", "bf16") if precision_cfg == "bf16" or bf16_is_native(device) else ("fp32",)
