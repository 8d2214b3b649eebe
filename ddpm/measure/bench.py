"""How fast is our UNet, against a matched diffusers ``UNet2DConditionModel``, on this machine?

``python -m ddpm.measure.bench [--quick] [--out runs/bench.md]`` (``make bench``), all in one process:

(a) the matmul peak: an n³ ``torch.mm`` in fp32 and bf16 (GFLOP/s; bf16 only where it is timed, see below), at the
    start and again at the end, so that drift (thermal throttling, a neighbour on the machine) shows; n = 2048 on a
    CPU, 8192 on a GPU (a 2048³ product reaches less than half of an H100's bf16 peak). Where CUDA runs fp32
    convolutions or matmuls in TF32 (``torch.backends.cudnn.allow_tf32``, on by default, or
    ``torch.backends.cuda.matmul.allow_tf32``), a TF32 matmul peak is measured too and the fp32 rows are reported
    against it: their convolutions ran in TF32;
(b) training images/s at BATCH_SIZE: forward + backward + AdamW step of the ε-loss at random t, contexts
    (BATCH_SIZE, 16, 128) with a bool mask, for our UNet (built from config.py's values) and for a diffusers
    ``UNet2DConditionModel`` configured to match it (params and forward GFLOPs, counted with
    ``torch.utils.flop_counter.FlopCounterMode``, are reported for both), interleaved round-robin (one
    iteration of each variant per round; 2 warm-up rounds, then 10 timed; the median), in fp32 and in bf16
    autocast (channels_last for ours as configured); where config.py sets COMPILE, both models again under
    ``torch.compile`` at the configured precision (the first, compiling call is timed apart);
(c) sampling: seconds per guided step for 64 images (one batch-128 forward) of ours, and the seconds for 64
    images at NUM_INFERENCE_STEPS steps (one guided call a step: DDIM and the DPM-Solver++ samplers alike);
(d) achieved GFLOP/s = 3·forward FLOPs·images/s, and its fraction of the fastest measured matmul peak;
(e) minutes per 1,000 optimizer steps at BATCH_SIZE, from (b): with the steps a run needs to reach a quality
    (the README's steps to 0.9), the minutes it takes on this machine.

bf16 is timed only where the device computes it natively (``bf16_is_native``) or PRECISION asks for it: on a CPU
with AVX2 alone torch emulates it (a 2048³ matmul at 0.3 GFLOP/s, ADR 0035), and its rows would take longer than
the rest of the bench to report a precision that ``PRECISION = "auto"`` never trains in.

Any config: ``--set KEY=VALUE`` (repeatable) overrides config.py's values, validated like train.py's, e.g.
``make bench ARGS="--set BATCH_SIZE=512 --set BASE_CHANNELS=128"`` (the GPU-sized comparison of issue 12).

Writes a Markdown report to ``--out`` and prints, last,
``train_speedup=… eager_speedup=… peak_fraction=… sample64_s=… ours_img_s=… diffusers_img_s=… min_per_1k_steps=…``:
at the configured PRECISION, ours as train.py runs it (compiled where COMPILE) ÷ the faster of diffusers eager and
compiled, and both eager. ``--quick`` (tests): 1 warm-up and 2 timed iterations at batch 8, a 512³ matmul.

diffusers is a benchmark-only dependency (requirements-bench.txt). This module never imports ``config``:
the CLI reads config.py with ``ddpm.adr.read_config`` (an ``ast`` reader) and passes values on.
"""

import argparse
import statistics
import sys
import time
from typing import Callable, Optional

import torch

from ddpm.cli import command_line, error
from ddpm.decisions.config_file import read_config  # an ast reader: config.py is never executed here
from ddpm.files import write_text
from ddpm.measure.bench_report import curve_markdown, headline_line, markdown, quality_curve
from ddpm.measure.peer import DIFFUSERS_MISSING, build_diffusers, diffusers_args
from ddpm.measure.timing import (
    DTYPES,
    _device_name,
    matmul_gflops,
    matmul_size,
    round_robin,
    sampling_step_seconds,
    tf32_in_use,
    tf32_matmul_gflops,
    timed_precisions,
)
from ddpm.measure.workload import REPO_ROOT, TrainStep, count_params, forward_flops, make_inputs, unet_args
from ddpm.model.diffusion import GaussianDiffusion
from ddpm.model.unet import UNet
from ddpm.run import settings
from ddpm.run.hardware import resolve_precision
from ddpm.run.settings import parse_overrides, validate


# ---- measurements -------------------------------------------------------------------------------------
def run_bench(cfg: dict, *, quick: bool = False, device: Optional[str] = None, log: Callable = print) -> dict:
    """All measurements; ``cfg`` holds config.py's values (UPPER_CASE keys). Returns a results dict."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    batch = 8 if quick else cfg["BATCH_SIZE"]
    warmup, iters = (1, 2) if quick else (2, 10)
    mm_n, mm_iters = matmul_size(device, quick), 2 if quick else 3
    tf32 = tf32_in_use(device)
    sample_images = 8 if quick else 64
    steps = cfg["NUM_INFERENCE_STEPS"]
    precision_cfg, channels_last = (
        resolve_precision(cfg["PRECISION"], device),
        cfg["CHANNELS_LAST"],
    )  # "auto" → fp32 or bf16
    precisions = timed_precisions(precision_cfg, device)
    args = unet_args(cfg)
    shape = dict(
        image_size=cfg["IMAGE_SIZE"],
        context_length=cfg["TEXT_CONTEXT_LENGTH"],
        context_dim=cfg["TEXT_WIDTH"],
        timesteps=cfg["TIMESTEPS"],
    )
    res = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "quick": quick,
        "batch": batch,
        "warmup": warmup,
        "iters": iters,
        "matmul_n": mm_n,
        "sample_images": sample_images,
        "steps": steps,
        "precision": precision_cfg,
        "precision_config": cfg["PRECISION"],
        "precisions": list(precisions),
        "channels_last": channels_last,
        "unet_args": args,
        "context_length": cfg["TEXT_CONTEXT_LENGTH"],
        "torch": torch.__version__,
        "cpu": _device_name(device),
        "tf32": tf32,
    }

    def peaks(tag):
        out = {}
        for name in precisions:
            out[name] = matmul_gflops(DTYPES[name], n=mm_n, iters=mm_iters, device=device)
        if tf32:
            out["tf32"] = tf32_matmul_gflops(n=mm_n, iters=mm_iters, device=device)
        log(f"matmul {mm_n}³ ({tag}): " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in out.items()))
        return out

    res["matmul_start"] = peaks("start")

    torch.manual_seed(0)
    models = {"ours": UNet(**args).to(device), "diffusers": build_diffusers(args).to(device)}
    import diffusers

    res["diffusers"] = diffusers.__version__
    res["diffusers_args"] = {k: list(v) if isinstance(v, tuple) else v for k, v in diffusers_args(args).items()}
    x0, t, ctx, mask = make_inputs(batch, device=device, **shape)
    res["params"], res["fwd_gflops_per_image"] = {}, {}
    for name, m in models.items():
        res["params"][name] = count_params(m)
        res["fwd_gflops_per_image"][name] = forward_flops(m, (x0[:2], t[:2], ctx[:2], mask[:2])) / 2 / 1e9
        log(
            f"{name}: {res['params'][name] / 1e6:.3f} M params, {res['fwd_gflops_per_image'][name]:.4f} forward GFLOPs/image"
        )

    # the UNet's step is timed on Gaussian diffusion whatever OBJECTIVE says: flow matching runs the same forward
    diffusion = GaussianDiffusion(**{**settings.diffusion_args(cfg), "objective": "ddpm"}).to(device)
    compile_too = cfg["COMPILE"] and not quick  # compiled variants at the configured precision only (compiling is slow)
    res["compile"], res["compile_s"], res["train"] = compile_too, {}, {}
    for precision in precisions:
        steps_fns = {}
        for name, m in models.items():
            steps_fns[name] = TrainStep(
                m, diffusion, x0, ctx, mask, precision=precision, channels_last=channels_last and name == "ours"
            )
        if compile_too and precision == precision_cfg:
            for name, m in models.items():
                step = TrainStep(
                    m,
                    diffusion,
                    x0,
                    ctx,
                    mask,
                    precision=precision,
                    channels_last=channels_last and name == "ours",
                    compile=True,
                )
                t0 = time.perf_counter()
                step()  # the first call compiles; not timed below
                res["compile_s"][name] = time.perf_counter() - t0
                log(f"compiled {name} in {res['compile_s'][name]:.0f} s")
                steps_fns[f"{name} (compiled)"] = step
        times = round_robin(steps_fns, warmup=warmup, iters=iters, device=device)
        res["train"][precision] = {}
        for name, ts in times.items():
            med = statistics.median(ts)
            res["train"][precision][name] = {"median_s": med, "min_s": min(ts), "max_s": max(ts), "img_s": batch / med}
        log(
            f"train {precision}: "
            + ", ".join(f"{n} {v['img_s']:.1f} img/s" for n, v in res["train"][precision].items())
        )
        del steps_fns  # free optimizer state

    per_step = sampling_step_seconds(
        models["ours"],
        sample_images,
        precision=precision_cfg,
        channels_last=channels_last,
        warmup=warmup,
        iters=iters,
        device=device,
        **shape,
    )
    res["sample"] = {
        "step_s": per_step,
        "images": sample_images,
        "forward_batch": 2 * sample_images,
        "total_s": per_step * steps,
    }
    log(
        f"sampling: {per_step:.4f} s/step for {sample_images} images (guided), {per_step * steps:.2f} s at {steps} steps"
    )

    res["matmul_end"] = peaks("end")
    res["achieved"] = {}
    for precision in precisions:
        peak_dtype = "tf32" if precision == "fp32" and tf32 else precision  # what the fp32 rows really ran in
        peak = max(res["matmul_start"][peak_dtype], res["matmul_end"][peak_dtype])
        res["achieved"][precision] = {}
        for name, tr in res["train"][precision].items():
            gflops = 3 * res["fwd_gflops_per_image"][name.split()[0]] * tr["img_s"]
            res["achieved"][precision][name] = {"gflop_s": gflops, "fraction_of_own_peak": gflops / peak}
    best_peak = max(max(res["matmul_start"].values()), max(res["matmul_end"].values()))
    cfg_train = res["train"][precision_cfg]
    ours = "ours (compiled)" if compile_too else "ours"  # as train.py runs it
    best_diffusers = max((n for n in cfg_train if n.startswith("diffusers")), key=lambda n: cfg_train[n]["img_s"])
    res["headline_variants"] = {"ours": ours, "diffusers": best_diffusers}
    res["headline"] = {
        "train_speedup": cfg_train[ours]["img_s"] / cfg_train[best_diffusers]["img_s"],
        "eager_speedup": cfg_train["ours"]["img_s"] / cfg_train["diffusers"]["img_s"],
        "peak_fraction": res["achieved"][precision_cfg][ours]["gflop_s"] / best_peak,
        "sample64_s": res["sample"]["total_s"],
        "ours_img_s": cfg_train[ours]["img_s"],
        "diffusers_img_s": cfg_train[best_diffusers]["img_s"],
        "min_per_1k_steps": 1000 * batch / cfg_train[ours]["img_s"] / 60,
    }
    return res


# ---- report -------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddpm.measure.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (1 warm-up, 2 timed, batch 8), for tests")
    parser.add_argument(
        "--out", default=str(REPO_ROOT / "runs" / "bench.md"), help="Markdown report (default: %(default)s)"
    )
    parser.add_argument("--config", default=str(REPO_ROOT / "config.py"), help="config file (default: the repo's)")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--runs", default=str(REPO_ROOT / "runs"), help="where to find the time-to-quality curve")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set BATCH_SIZE=512 --set BASE_CHANNELS=128",
    )
    args = parser.parse_args(command_line(argv))
    try:
        overrides = parse_overrides(args.set)
        cfg = validate({**read_config(args.config), **overrides})
    except ValueError as err:
        return error("bench", str(err))
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return error("bench", DIFFUSERS_MISSING)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run_bench(cfg, quick=args.quick, device=args.device, log=lambda m: print(m, file=sys.stderr, flush=True))
    res["overrides"] = overrides
    name, points, minutes_to_90 = quality_curve(args.runs)
    report = markdown(res) + "\n" + curve_markdown(name, points, minutes_to_90)
    if minutes_to_90 is not None:
        res["headline"]["minutes_to_90"] = minutes_to_90
    write_text(report, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    print(headline_line(res["headline"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
