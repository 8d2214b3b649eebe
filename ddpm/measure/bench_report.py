"""``make bench``'s report: the Markdown of one run of the benchmark (models, matmul peaks, training throughput,
sampling, the headline line), and the time-to-quality curve of the newest run that has one, read from its run.json.
"""

from ddpm.decisions.runs import load_runs


def headline_line(h: dict) -> str:
    def f(v):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"

    return " ".join(f"{k}={f(v)}" for k, v in h.items())


def markdown(res: dict) -> str:
    q = " **(quick run: tiny sizes, not comparable)**" if res["quick"] else ""
    L = [
        f"# Benchmark: our UNet vs diffusers UNet2DConditionModel{q}",
        "",
        f"- device: {res['device']} ({res['cpu']}), torch threads: {res['threads']}, torch {res['torch']}, "
        f"diffusers {res['diffusers']}",
        f"- training batch {res['batch']}, {res['warmup']} warm-up + {res['iters']} timed iterations per variant, "
        "interleaved round-robin, median; forward + backward + AdamW step of the ε-loss, random t, "
        f"contexts ({res['batch']}, {res['context_length']}, {res['unet_args']['context_dim']}) with a bool mask",
        f"- precision {res['precision']} (PRECISION = {res['precision_config']!r}; autocast), "
        f"channels_last {res['channels_last']} (ours only)",
        f"- overrides of config.py (--set): {res.get('overrides') or 'none'}",
        f"- our UNet: `{res['unet_args']}`",
        f"- diffusers: `{res['diffusers_args']}`",
        "",
        "## Models",
        "",
        "| model | params | forward GFLOPs / image |",
        "|---|---:|---:|",
    ]
    for name in ("ours", "diffusers"):
        L.append(f"| {name} | {res['params'][name]:,} | {res['fwd_gflops_per_image'][name]:.4f} |")
    L += [
        "",
        f"## Matmul peak ({res['matmul_n']}³ torch.mm, GFLOP/s)",
        "",
        "| dtype | start | end |",
        "|---|---:|---:|",
    ]
    for p in res["matmul_start"]:
        L.append(f"| {p} | {res['matmul_start'][p]:.1f} | {res['matmul_end'][p]:.1f} |")
    if res["tf32"]:
        L += [
            "",
            "TF32 is on for fp32 convolutions or matmuls on this device, so the fp32 rows below are fractions "
            "of the TF32 matmul peak.",
        ]
    L += [
        "",
        "## Training throughput",
        "",
        "| precision | model | img/s | median s/iter | min–max s | achieved GFLOP/s | fraction of its dtype's peak |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for p in res["precisions"]:
        for name, tr in res["train"][p].items():
            ac = res["achieved"][p][name]
            L.append(
                f"| {p} | {name} | {tr['img_s']:.1f} | {tr['median_s']:.4f} | {tr['min_s']:.4f}–{tr['max_s']:.4f} | "
                f"{ac['gflop_s']:.1f} | {ac['fraction_of_own_peak']:.3f} |"
            )
    if "bf16" not in res["precisions"]:
        L += [
            "",
            'bf16 not timed: this device has no bf16 in hardware, so torch emulates it and PRECISION = "auto" '
            "trains in fp32 (ADR 0035); `--set PRECISION=bf16` times it anyway.",
        ]
    if res["compile_s"]:
        L += [
            "",
            "First call of each compiled variant (compiling; not in the medians): "
            + ", ".join(f"{n} {sec:.0f} s" for n, sec in res["compile_s"].items())
            + ".",
        ]
    s, h, v = res["sample"], res["headline"], res["headline_variants"]
    L += [
        "",
        "## Sampling (ours, configured precision, classifier-free guidance)",
        "",
        f"- {s['step_s']:.4f} s per step for {s['images']} images (one forward of batch {s['forward_batch']})",
        f"- {s['total_s']:.2f} s for {s['images']} images at {res['steps']} sampling steps",
        "",
        "## Headline",
        "",
        f"- train speedup at {res['precision']}: {h['train_speedup']:.3f} ({v['ours']}, as train.py runs it, ÷ "
        f"{v['diffusers']}, the faster diffusers variant); both eager: {h['eager_speedup']:.3f}",
        f"- achieved GFLOP/s (3 × forward FLOPs × img/s) of {v['ours']} at {res['precision']} as a fraction of the "
        f"fastest measured matmul peak: {h['peak_fraction']:.3f}",
        f"- {h['min_per_1k_steps']:.1f} minutes per 1,000 optimizer steps of {res['batch']} images at that speed "
        "(the training step alone: no data loading, sample grids or probe evaluations)",
        "",
        "```",
        headline_line(h),
        "```",
        "",
    ]
    return "\n".join(L)


def quality_curve(runs_dir: str) -> tuple:
    """The time-to-quality curve of the newest run that has one: (run name, points, minutes to 0.9 or None).

    train.py appends (minutes of training, step, joint accuracy) to run.json after every probe evaluation
    (ADR 0008), so `make train` followed by `make bench` reports how fast the default config gets good.
    """
    with_curve = [run for run in load_runs(runs_dir) if (run["data"] or {}).get("quality_curve")]  # newest first
    if not with_curve:
        return None, [], None
    name, points = with_curve[0]["name"], with_curve[0]["data"]["quality_curve"]
    reached = [p["minutes"] for p in points if p["joint_accuracy"] >= 0.9]
    return name, points, (reached[0] if reached else None)


def curve_markdown(name: str, points: list, minutes_to_90) -> str:
    if not points:
        return "## Time to quality\n\nNo run with a quality curve under runs/: run `make train` first.\n"
    rows = [f"| {p['minutes']:.1f} | {p['step']} | {p['joint_accuracy']:.3f} |" for p in points]
    verdict = (
        f"Joint accuracy 0.9 first reached after **{minutes_to_90:.1f} min**."
        if minutes_to_90 is not None
        else "Joint accuracy 0.9 not reached in this run."
    )
    return "\n".join(
        [
            f"## Time to quality (run `{name}`)",
            "",
            "Joint prompt accuracy of the in-training probe evaluation (16 samples; ADR 0008) against "
            "minutes of training (grids included, evaluation excluded).",
            "",
            "| minutes | step | joint accuracy |",
            "|---|---|---|",
            *rows,
            "",
            verdict,
            "",
        ]
    )
