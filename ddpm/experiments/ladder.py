"""Scaling ladders: ``python -m ddpm.experiments.ladder SPEC`` (``make ladder SPEC=decisions/ladders/width.toml``).

A ladder trains each rung (a set of constants: width, depth per level, both, dataset size, …) with several seeds
at the same budget, through the sweep's runner (``sweep.run_points``: the same run folders, resume and failure
handling), and reports final loss and the in-training probe's final joint accuracy against parameters and FLOPs:
``runs/<ladder>/results.md``, ``results.json`` and ``results.png``.

Parameters are counted on the UNet built from the rung's config; FLOPs are one fp32 forward per image
(``torch.utils.flop_counter.FlopCounterMode``, as ``make bench`` counts them), and a run's training compute is
3 × forward FLOPs × images (forward plus a backward of about twice its cost), the measure issue 10 uses.

The verdict, per metric, on the rung means m_1 … m_k in ladder order and each rung's seed spread
s_i = max − min of its seeds' values:

    a step i → i+1 is *clear* when |m_{i+1} − m_i| > max(s_i, s_{i+1}): the gap between the rungs is larger than
    the spread of either rung's seeds; it *improves* when m_{i+1} is better (lower loss, higher accuracy).

    "monotonic"       every step is clear and improves
    "not monotonic"   some step is clear and worsens (a reversal larger than the seeds' spread)
    "inconclusive: seed spread larger than the gap between rungs"   otherwise: no clear reversal, but some step
                      is not clear
    "inconclusive: fewer than 2 seeds on a rung"   a rung with fewer than two values has no spread to compare
"""

import argparse
import os
import sys

import torch
from PIL import Image, ImageDraw

from ddpm.decisions.adr import fmt, read_config
from ddpm.experiments import results
from ddpm.experiments.spec import SpecError, load
from ddpm.experiments.sweep import REPO_ROOT, budget_steps, check_plan, run_points, subprocess_runner
from ddpm.files import write_json, write_text
from ddpm.measure.bench import count_params, forward_flops
from ddpm.measure.report import load_font, plot_panel, save_png
from ddpm.measure.workload import make_inputs, unet_args
from ddpm.model.unet import UNet

MONOTONIC, NOT_MONOTONIC = "monotonic", "not monotonic"
INCONCLUSIVE = "inconclusive: seed spread larger than the gap between rungs"
TOO_FEW_SEEDS = "inconclusive: fewer than 2 seeds on a rung"


def verdict(values: list, direction: str) -> str:
    """The verdict above for ``values`` = one list of seed values per rung, in ladder order (None = no value)."""
    rungs = [[v for v in vs if v is not None] for vs in values]
    if any(len(vs) < 2 for vs in rungs):
        return TOO_FEW_SEEDS
    means = [sum(vs) / len(vs) for vs in rungs]
    spreads = [max(vs) - min(vs) for vs in rungs]
    sign = -1 if direction == "min" else 1
    clear = [abs(means[i + 1] - means[i]) > max(spreads[i], spreads[i + 1]) for i in range(len(rungs) - 1)]
    improves = [sign * (means[i + 1] - means[i]) > 0 for i in range(len(rungs) - 1)]
    if any(c and not up for c, up in zip(clear, improves)):
        return NOT_MONOTONIC
    return MONOTONIC if all(clear) else INCONCLUSIVE


def size(cfg: dict) -> dict:
    """{"params", "fwd_flops_per_image"} of the UNet train.py would build from ``cfg`` (scratch text encoder)."""
    torch.manual_seed(0)
    model = UNet(**unet_args(cfg)).eval()
    inputs = make_inputs(2, image_size=cfg["IMAGE_SIZE"], context_length=cfg["TEXT_CONTEXT_LENGTH"],
                         context_dim=cfg["TEXT_WIDTH"], timesteps=cfg["TIMESTEPS"], device="cpu")
    return {"params": count_params(model), "fwd_flops_per_image": forward_flops(model, inputs) // 2}


def table(rows: list) -> str:
    names = list(dict.fromkeys(k for r in rows for k in r["overrides"]))
    head = ["rung", *names, "params", "fwd GFLOP/img", "train TFLOP", "final loss", "final joint acc.", "seeds ok"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r["trial"], *(r["set"].get(n, "") for n in names), f"{r['params']:,}",
                                        f"{r['fwd_flops_per_image'] / 1e9:.3f}", f"{r['train_flops'] / 1e12:.2f}",
                                        results.describe(r["final_loss"]), results.describe(r["final_accuracy"]),
                                        f"{r['final_loss']['n']}/{len(r['runs'])}"]) + " |")
    return "\n".join(lines)


def summarise(plan: dict, runs: list, config: dict) -> dict:
    """Rows in ladder order with sizes and spreads, and the verdict for final loss and final accuracy."""
    rows = sorted(results.aggregate(runs, plan["metric"], plan["direction"]), key=lambda r: r["trial"])
    for row in rows:
        cfg = {**config, **plan["base_values"], **row["overrides"]}
        row.update(size(cfg))
        row["train_flops"] = 3 * row["fwd_flops_per_image"] * cfg["BATCH_SIZE"] * plan["budget"]
        row["final_accuracy"] = results.spread([r.get("final_accuracy") for r in row["runs"]])
    verdicts = {"final_loss": verdict([[r.get("final_loss") for r in row["runs"]] for row in rows], "min"),
                "final_accuracy": verdict([[r.get("final_accuracy") for r in row["runs"]] for row in rows], "max")}
    best = results.aggregate(runs, plan["metric"], plan["direction"])[0]
    return {"rows": rows, "verdicts": verdicts, "best": best, "table": table(rows)}


def write(plan: dict, summary: dict, out_dir: str) -> dict:
    paths = {k: os.path.join(out_dir, f"results.{k}") for k in ("json", "md", "png")}
    verdicts = "\n".join(f"- {k}: **{v}**" for k, v in summary["verdicts"].items())
    write_text(f"# Ladder {plan['name']}\n\n`{plan['command']}`: {len(plan['points'])} rungs × "
                       f"{len(plan['seeds'])} seeds, {plan['budget']} optimizer steps each; mean (min / median / max) "
                       f"over seeds.\n\n{summary['table']}\n\nVerdict (ddpm/experiments/ladder.py defines it):\n"
                       f"{verdicts}\n\n![final loss and accuracy against parameters](results.png)\n", paths["md"])
    write_json(results.jsonable({**plan, **summary}), paths["json"])
    rows = summary["rows"]
    img = Image.new("RGB", (900, 340), (255, 255, 255))
    draw, font = ImageDraw.Draw(img), load_font(11)
    xs = [r["params"] for r in rows]
    for i, key in enumerate(("final_loss", "final_accuracy")):
        series = [(k, c, [r[key][k] for r in rows]) for k, c in zip(("mean", "min", "max"), results.COLORS)]
        plot_panel(draw, (450 * i, 0, 450 * (i + 1), 340), xs, series, title=f"{key} against parameters",
                   ylabel=key, xlabel="parameters (log axis)", x_scale=results.AXES["log"], font=font)
    save_png(img, paths["png"])
    return paths


def main(argv=None, *, runner=subprocess_runner) -> int:
    p = argparse.ArgumentParser(prog="python -m ddpm.experiments.ladder", description=__doc__.split("\n\n")[0])
    p.add_argument("spec", help="a ladder spec, e.g. decisions/ladders/width.toml")
    p.add_argument("--runs-dir", default=str(REPO_ROOT / "runs"), help="the ladder goes to RUNS_DIR/<name>/")
    p.add_argument("--config", default=str(REPO_ROOT / "config.py"), help="config.py (sizes, budget_fraction)")
    p.add_argument("--retry-failed", action="store_true", help="train the failed runs again")
    args = p.parse_args(argv)
    try:
        spec = load(args.spec, ladder=True)
        config = read_config(args.config)
        budget = budget_steps(spec, config)
        points = [{"trial": f"r{i}", "overrides": rung} for i, rung in enumerate(spec.rungs)]
        out_dir = os.path.join(args.runs_dir, spec.name)
        plan = results.jsonable({"kind": "ladder", "name": spec.name, "spec": args.spec, "seeds": spec.seeds,
                                 "budget": budget, "metric": spec.metric, "direction": spec.direction,
                                 "target_accuracy": spec.target_accuracy, "base": spec.base, "points": points,
                                 "command": f"make ladder SPEC={args.spec}"})
        check_plan(out_dir, plan)
    except SpecError as err:
        print(f"ladder: {err}", file=sys.stderr)
        return 2
    for point in points:
        print(f"{point['trial']}: " + " ".join(f"{k}={fmt(v)}" for k, v in point["overrides"].items()))
    runs = run_points(spec, points, out_dir, budget=budget, runner=runner, retry_failed=args.retry_failed)
    summary = summarise({**plan, "base_values": spec.base}, runs, config)
    paths = write(plan, summary, out_dir)
    print(summary["table"] + "\n" + "\n".join(f"{k}: {v}" for k, v in summary["verdicts"].items()))
    print(f"results → {paths['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
