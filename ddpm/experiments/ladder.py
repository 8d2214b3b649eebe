"""Scaling ladders: ``python -m ddpm.experiments.ladder SPEC`` (``make ladder SPEC=decisions/ladders/width.toml``).

A ladder trains each rung (a set of constants: width, depth per level, both, dataset size, …) with several seeds
at the same budget (the same steps; or, with ``budget_tflop``, the same training compute, so that a wider rung
trains fewer steps: which size is best for a given compute, as a default must fit one), through the sweep's
runner (``sweep.run_points``: the same run folders, resume and failure handling), and reports final loss and the
in-training probe's final joint accuracy against parameters and FLOPs: ``runs/<ladder>/results.md``,
``results.json`` and ``results.png``.

Parameters are counted on the UNet built from the rung's config; FLOPs are one fp32 forward per image
(``torch.utils.flop_counter.FlopCounterMode``, as ``make bench`` counts them), and a run's training compute is
3 × forward FLOPs × images (forward plus a backward of about twice its cost), the measure issue 10 uses.

The verdict, per metric, applies make compare's rule (``ddpm.measure.intervals.compare``) to each step between
neighbouring rungs: the difference of the rungs' values with its 95 % interval over seeds (paired by seed), which
says the next rung is better, worse, or not resolved:

    "monotonic"       every step is resolved and the next rung is better (lower loss, higher accuracy)
    "not monotonic"   some step is resolved and the next rung is worse: a reversal larger than the seeds' spread
    "not resolved: about N seeds would resolve the closest step"   otherwise: no resolved reversal, but some step
                      is not resolved; N is what it would take, at the spread seen
    "not resolved: fewer than 2 seeds on a rung"   a rung with fewer than two values has no spread to compare
"""

import os
import sys

from PIL import Image, ImageDraw

from ddpm.experiments import results
from ddpm.experiments.sweep import subprocess_runner, train_spec
from ddpm.files import write_json, write_text
from ddpm.measure.intervals import compare
from ddpm.measure.report import load_font, plot_panel, save_png
from ddpm.measure.workload import model_size

MONOTONIC, NOT_MONOTONIC = "monotonic", "not monotonic"
INCONCLUSIVE = "not resolved"  # followed by ": about N seeds would resolve the closest step"
TOO_FEW_SEEDS = "not resolved: fewer than 2 seeds on a rung"


def verdict(values: list, direction: str) -> str:
    """The verdict above for ``values`` = one list of seed values per rung, in ladder order and seed order (None =
    no value)."""
    if any(sum(v is not None for v in vs) < 2 for vs in values):
        return TOO_FEW_SEEDS
    steps = [
        compare(
            values[i + 1], values[i], higher_is_better=direction == "max", paired=len(values[i]) == len(values[i + 1])
        )
        for i in range(len(values) - 1)
    ]
    if any(c.verdict == "B better" for c in steps):
        return NOT_MONOTONIC
    open_ = [c.seeds_needed for c in steps if c.verdict == "not resolved"]
    if not open_:
        return MONOTONIC
    need = min((n for n in open_ if n), default=None)
    return (
        f"{INCONCLUSIVE}: about {need} seeds would resolve the closest step"
        if need
        else f"{INCONCLUSIVE}: no difference seen"
    )


def table(rows: list) -> str:
    names = list(dict.fromkeys(k for r in rows for k in r["overrides"]))
    head = [
        "rung",
        *names,
        "params",
        "fwd GFLOP/img",
        "steps",
        "train TFLOP",
        "final loss",
        "final joint acc.",
        "seeds ok",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(
                [
                    r["trial"],
                    *(r["set"].get(n, "") for n in names),
                    f"{r['params']:,}",
                    f"{r['fwd_flops_per_image'] / 1e9:.3f}",
                    f"{r['steps']:,}",
                    f"{r['train_flops'] / 1e12:.2f}",
                    results.describe(r["final_loss"]),
                    results.describe(r["final_accuracy"]),
                    f"{r['final_loss']['n']}/{len(r['runs'])}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def summarise(plan: dict, runs: list, config: dict) -> dict:
    """Rows in ladder order with sizes and spreads, and the verdict for final loss and final accuracy."""
    ranked = results.aggregate(runs, plan["metric"], plan["direction"])
    rows = sorted(ranked, key=lambda r: int(r["trial"][1:]))  # rung order: r0, r1, …
    steps = {p["trial"]: p.get("budget", plan["budget"]) for p in plan["points"]}  # budget_tflop: each rung's own
    for row in rows:
        cfg = {**config, **plan["base_values"], **row["overrides"]}
        row.update(model_size(cfg), steps=steps[row["trial"]])
        row["train_flops"] = 3 * row["fwd_flops_per_image"] * cfg["BATCH_SIZE"] * row["steps"]
        row["final_accuracy"] = results.spread([r.get("final_accuracy") for r in row["runs"]])
    verdicts = {
        "final_loss": verdict([[r.get("final_loss") for r in row["runs"]] for row in rows], "min"),
        "final_accuracy": verdict([[r.get("final_accuracy") for r in row["runs"]] for row in rows], "max"),
    }
    return {"rows": rows, "verdicts": verdicts, "best": ranked[0], "table": table(rows)}


def write(plan: dict, summary: dict, out_dir: str) -> dict:
    paths = {k: os.path.join(out_dir, f"results.{k}") for k in ("json", "md", "png")}
    verdicts = "\n".join(f"- {k}: **{v}**" for k, v in summary["verdicts"].items())
    write_text(
        f"# Ladder {plan['name']}\n\n`{plan['command']}`: {len(plan['points'])} rungs × "
        f"{len(plan['seeds'])} seeds, {plan['budget_text']}; mean (min / median / max) "
        f"over seeds.\n\n{summary['table']}\n\nVerdict (ddpm/experiments/ladder.py defines it):\n"
        f"{verdicts}\n\n![final loss and accuracy against parameters](results.png)\n",
        paths["md"],
    )
    write_json(results.jsonable({**plan, **summary}), paths["json"])
    rows = summary["rows"]
    img = Image.new("RGB", (900, 340), (255, 255, 255))
    draw, font = ImageDraw.Draw(img), load_font(11)
    xs = [r["params"] for r in rows]
    for i, key in enumerate(("final_loss", "final_accuracy")):
        series = [(k, c, [r[key][k] for r in rows]) for k, c in zip(("mean", "min", "max"), results.COLORS)]
        plot_panel(
            draw,
            (450 * i, 0, 450 * (i + 1), 340),
            xs,
            series,
            title=key,
            ylabel=key,
            xlabel="parameters (log axis)",
            x_scale=results.AXES["log"],
            font=font,
        )
    save_png(img, paths["png"])
    return paths


def main(argv=None, *, runner=subprocess_runner) -> int:
    done = train_spec(argv, ladder=True, runner=runner)
    if isinstance(done, int):
        return done
    spec, config, out_dir, plan, runs = done
    summary = summarise({**plan, "base_values": spec.base}, runs, config)
    paths = write(plan, summary, out_dir)
    print(summary["table"] + "\n" + "\n".join(f"{k}: {v}" for k, v in summary["verdicts"].items()))
    print(f"results → {paths['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
