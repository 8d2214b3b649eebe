"""Where does the time go? ``python -m ddpm.measure.profiling [--quick] [--out runs/profile.md]`` (``make profile``).

Profiles (``torch.profiler``, CPU self time) two things of our UNet built from config.py's values:

- a training step as ``train.py`` runs it, eagerly (forward + backward + AdamW at BATCH_SIZE, configured
  PRECISION and memory format); eager, because the compiled step's fused kernels no longer say which layer
  they came from, and the eager profile is what tells you what to fuse;
- a guided sampling step: one no-grad forward of 2 × 64 images (conditional and null prompt).

Each gets a table of time by kind of work (attention, convolution, normalisation, linear layers, element-wise,
optimizer, other) and the ten most expensive operators with their input shapes. The last line printed is
``train_attention=… train_conv=… train_norm=… sample_attention=… …`` (shares of self time), for scripts.
Profiling adds overhead, so read shares, not absolute times; ``make bench`` measures speed.
"""

import argparse
import os
import sys
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from ddpm.cli import command_line
from ddpm.decisions.config_file import read_config  # an ast reader: config.py is never executed here
from ddpm.files import write_text
from ddpm.measure.workload import REPO_ROOT, TrainStep, make_inputs, sampling_step, unet_args
from ddpm.model.diffusion import GaussianDiffusion
from ddpm.model.unet import UNet
from ddpm.run import settings
from ddpm.run.hardware import resolve_precision

# Kind of work of an operator, by the first pattern its name contains (checked in this order).
KINDS = (
    ("attention", ("scaled_dot_product", "softmax", "bmm", "masked_fill")),
    ("convolution", ("conv",)),
    ("normalisation", ("group_norm", "layer_norm")),
    ("linear layers", ("addmm", "aten::mm", "linear")),
    ("optimizer", ("optimizer", "_foreach", "adamw")),
    (
        "element-wise",
        (
            "silu",
            "gelu",
            "add",
            "mul",
            "sub",
            "div",
            "copy",
            "_to_copy",
            "cat",
            "exp",
            "sqrt",
            "where",
            "fill",
            "clamp",
            "upsample",
            "sum",
            "mean",
            "pow",
            "neg",
            "lerp",
            "rsqrt",
        ),
    ),
)


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, patterns in KINDS:
        if any(p in low for p in patterns):
            return kind
    return "other"


def profile_call(fn, *, warmup: int, iters: int) -> list:
    """(name, input shapes, self CPU µs) per operator of ``iters`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    if not torch.cuda.is_available():  # kineto, the profiler's backend, logs its GPU probe's failure on a CPU machine
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # read at its first use: nothing below the fatal
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(iters):
            fn()
    rows = prof.key_averages(group_by_input_shape=True)
    return [(r.key, str(r.input_shapes), r.self_cpu_time_total) for r in rows if r.self_cpu_time_total > 0]


def by_kind(rows: list) -> dict:
    """kind → share of self time, largest first; shares add up to 1."""
    totals = defaultdict(float)
    for name, _, us in rows:
        totals[kind_of(name)] += us
    whole = sum(totals.values()) or 1.0
    return dict(sorted(((k, v / whole) for k, v in totals.items()), key=lambda kv: -kv[1]))


def section(title: str, rows: list, top: int = 10) -> list:
    whole = sum(us for _, _, us in rows) or 1.0
    lines = [f"## {title}", "", "| kind of work | share of self CPU time |", "|---|---:|"]
    lines += [f"| {kind} | {share:.1%} |" for kind, share in by_kind(rows).items()]
    lines += ["", f"Top {top} operators:", "", "| operator | input shapes | share | kind |", "|---|---|---:|---|"]
    for name, shapes, us in sorted(rows, key=lambda r: -r[2])[:top]:
        short = shapes if len(shapes) <= 90 else shapes[:87] + "..."
        lines.append(f"| `{name}` | `{short}` | {us / whole:.1%} | {kind_of(name)} |")
    return lines + [""]


def run_profile(cfg: dict, *, quick: bool = False) -> tuple:
    """(markdown, shares) for a training and a sampling step of the UNet that ``cfg`` describes."""
    torch.manual_seed(0)
    args = unet_args(cfg)
    batch, images, (warmup, iters) = (4, 4, (1, 1)) if quick else (cfg["BATCH_SIZE"], 64, (3, 3))
    shape = dict(
        image_size=cfg["IMAGE_SIZE"],
        context_length=cfg["TEXT_CONTEXT_LENGTH"],
        context_dim=cfg["TEXT_WIDTH"],
        timesteps=cfg["TIMESTEPS"],
        device="cpu",
    )
    diffusion = GaussianDiffusion(**{**settings.diffusion_args(cfg), "objective": "ddpm"})  # the same forward
    model = UNet(**args)
    x0, _, ctx, mask = make_inputs(batch, **shape)
    precision = resolve_precision(cfg["PRECISION"], "cpu")  # "auto" → fp32 or bf16, as train.py resolves it
    step = TrainStep(model, diffusion, x0, ctx, mask, precision=precision, channels_last=cfg["CHANNELS_LAST"])
    train_rows = profile_call(step, warmup=warmup, iters=iters)

    sample_step = sampling_step(model, images, precision=precision, channels_last=cfg["CHANNELS_LAST"], **shape)
    sample_rows = profile_call(sample_step, warmup=warmup, iters=iters)
    q = " **(quick run: tiny sizes)**" if quick else ""
    md = [
        f"# Profile of our UNet{q}",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {precision}, channels_last "
        f"{cfg['CHANNELS_LAST']}, eager; {iters} profiled calls after {warmup} warm-up calls. UNet: `{args}`",
        "",
    ]
    md += section(f"Training step (batch {batch}: forward, backward, AdamW)", train_rows)
    md += section(f"Sampling step ({images} images, guided: one no-grad forward of batch {2 * images})", sample_rows)
    shares = {}
    for prefix, rows in (("train", train_rows), ("sample", sample_rows)):
        for kind, share in by_kind(rows).items():
            shares[f"{prefix}_{kind.split()[0].replace('-', '_')}"] = share
    return "\n".join(md), shares


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddpm.measure.profiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny batch, one profiled call (tests)")
    parser.add_argument(
        "--out", default=str(REPO_ROOT / "runs" / "profile.md"), help="Markdown report (default: %(default)s)"
    )
    parser.add_argument("--config", default=str(REPO_ROOT / "config.py"), help="config file (default: the repo's)")
    args = parser.parse_args(command_line(argv))
    md, shares = run_profile(read_config(args.config), quick=args.quick)
    write_text(md, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    print(" ".join(f"{k}={v:.3f}" for k, v in shares.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
