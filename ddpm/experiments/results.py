"""A sweep's results: per point the metric's mean and spread over seeds, ranked; written as results.json,
results.md (the table an ADR quotes), results.png (metric against each varied constant) and TensorBoard hparams.

Spread is reported as min / median / max over the seeds that finished (with 2-3 seeds a standard deviation says
little). A seed that failed, or never reached the target for ``steps_to_target``, has no value: points rank first
by how many seeds lack a value, then by the mean of the rest in the metric's direction.
"""

import math
import os
import statistics

from PIL import Image, ImageDraw

from ddpm.decisions.adr import fmt
from ddpm.files import write_json, write_text
from ddpm.measure.intervals import compare
from ddpm.measure.report import fmt_number, load_font, plot_panel, save_png

COLORS = ((31, 119, 180), (214, 39, 40), (44, 160, 44))
AXES = {"linear": None, "log": math.log10, "log(1-x)": lambda x: math.log10(1 - x)}  # search.Dimension.axis
NOT_TRAINED = ("new", "partial")  # a run's status before its training finished (sweep.run_status)


def jsonable(value):
    """A JSON copy: tuples become lists, non-finite floats None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def spread(values: list) -> dict:
    """{"n", "missing", "mean", "min", "median", "max"} of ``values``; None entries count as missing."""
    ok = [v for v in values if v is not None]
    out = {"n": len(ok), "missing": len(values) - len(ok)}
    out.update(
        {
            k: f(ok) if ok else None
            for k, f in (("mean", statistics.fmean), ("min", min), ("median", statistics.median), ("max", max))
        }
    )
    return out


def aggregate(runs: list, metric: str, direction: str, point_key: str = "trial") -> list:
    """One row per point: {"trial", "overrides", "set" (literals), "metric": spread, "final_loss": spread,
    "final_accuracy": spread, "runs"}, best first.

    Points tie on the metric when no seed of either has a value (say, no seed reached the target accuracy within the
    budget); the one whose seeds ended with the higher probe accuracy then ranks first, as the closer one.
    """
    rows = {}
    for r in runs:
        row = rows.setdefault(
            r[point_key],
            {
                point_key: r[point_key],
                "overrides": r["overrides"],
                "set": {k: fmt(v) for k, v in r["overrides"].items()},
                "runs": [],
            },
        )
        row["runs"].append(r)
    for row in rows.values():
        row["metric"] = spread([r.get(metric) for r in row["runs"]])
        row["final_loss"] = spread([r.get("final_loss") for r in row["runs"]])
        row["final_accuracy"] = spread([r.get("final_accuracy") for r in row["runs"]])
        row["failed"] = sum(r["status"] == "failed" for r in row["runs"])
    sign = 1 if direction == "min" else -1
    return sorted(
        rows.values(),
        key=lambda w: (
            w["metric"]["missing"],
            math.inf if w["metric"]["mean"] is None else sign * w["metric"]["mean"],
            -(w["final_accuracy"]["mean"] or 0.0),
            w[point_key],
        ),
    )


def seed_values(row: dict, metric: str) -> dict:
    """seed → the point's value of ``metric`` on that seed (None where it has none: failed, not reached)."""
    return {r["seed"]: r.get(metric) if r.get("status", "finished") == "finished" else None for r in row["runs"]}


def pair_verdicts(rows: list, metric: str, direction: str, name: str = "trial") -> list:
    """One line per pair of points: the difference of ``metric`` with its 95 % interval over seeds (paired by seed
    where both points have the same seeds) and the verdict (``ddpm.measure.intervals.compare``)."""
    lines = []
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            va, vb = seed_values(a, metric), seed_values(b, metric)
            paired = set(va) == set(vb)
            seeds = sorted(va) if paired else None
            c = compare(
                [va[k] for k in seeds] if paired else list(va.values()),
                [vb[k] for k in seeds] if paired else list(vb.values()),
                higher_is_better=direction == "max",
                paired=paired,
            )
            lines.append(f"- {c.text((a[name], b[name]), fmt=lambda v: f'{v:+.4g}')}")
    return lines


def describe(s: dict) -> str:
    """ "mean (min / median / max)", or "—" when no seed has a value."""
    if s["mean"] is None:
        return "—"
    if s["n"] == 1:
        return fmt_number(float(s["mean"]))
    return f"{fmt_number(float(s['mean']))} ({' / '.join(fmt_number(float(s[k])) for k in ('min', 'median', 'max'))})"


def per_seed(run: dict, metric: str) -> str:
    """One seed's value of ``metric`` for the table: a number, "failed", "not trained", or why there is none."""
    if run["status"] in NOT_TRAINED:  # --report on a sweep stopped early
        return "not trained"
    if run["status"] != "finished":
        return "failed"
    if run.get(metric) is None:
        return "not reached" if metric == "steps_to_target" else "—"
    return fmt_number(run[metric])


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def table(plan: dict, rows: list, current: dict) -> str:
    """The Markdown table of results.md: rank, point, varied values, metric, final loss, final probe accuracy
    (when the probe ran and the metric is not that accuracy), seeds, each seed's value."""
    names = list(rows[0]["overrides"]) if rows else []
    accuracy = plan["metric"] != "final_accuracy" and any(row["final_accuracy"]["n"] for row in rows)
    head = [
        "#",
        "trial",
        *names,
        f"{plan['metric']} ({plan['direction']})",
        "final loss",
        *(["final joint accuracy"] if accuracy else []),
        "seeds ok",
        "per seed",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for i, row in enumerate(rows, 1):
        seeds = ", ".join(f"s{r['seed']}: {per_seed(r, plan['metric'])}" for r in row["runs"])
        lines.append(
            "| "
            + " | ".join(
                [
                    str(i),
                    row["trial"],
                    *(row["set"][n] for n in names),
                    describe(row["metric"]),
                    describe(row["final_loss"]),
                    *([describe(row["final_accuracy"])] if accuracy else []),
                    f"{row['metric']['n']}/{len(row['runs'])}",
                    seeds,
                ]
            )
            + " |"
        )
    now = ", ".join(f"{n} = {fmt(current[n])}" for n in names if n in current)
    return "\n".join(lines) + (f"\n\nconfig.py today: {now}" if now else "")


def write(plan: dict, runs: list, out_dir: str, *, current: dict) -> dict:
    """results.json, results.md, results.png and the hparams; returns their paths."""
    rows = aggregate(runs, plan["metric"], plan["direction"])
    text = table(plan, rows, current)
    paths = {k: os.path.join(out_dir, f"results.{k}") for k in ("json", "md", "png")}
    failures = [f"- {r['run']}: {r.get('reason')}" for r in runs if r["status"] == "failed"]
    pairs = pair_verdicts(rows, plan["metric"], plan["direction"])
    write_text(
        f"# Sweep {plan['name']}\n\n`{plan['command']}`: {plural(len(plan['points']), 'point')} × "
        f"{plural(len(plan['seeds']), 'seed')}, {plan['budget_text']}, "
        f"ranked by {plan['metric']} ({plan['direction']}), "
        f"target joint accuracy {plan['target_accuracy']}; mean (min / median / max) over seeds.\n\n{text}\n"
        + (
            f"\nEach pair on {plan['metric']}: the difference with its 95 % interval over seeds, and the verdict "
            "(ddpm/measure/intervals.py):\n\n" + "\n".join(pairs) + "\n"
            if pairs
            else ""
        )
        + ("\nFailed runs:\n" + "\n".join(failures) + "\n" if failures else "")
        + "\n![metric against each varied constant](results.png)\n",
        paths["md"],
    )
    write_json(
        jsonable({**plan, "table": text, "pairs": pairs, "rows": rows, "best": rows[0] if rows else None}),
        paths["json"],
    )
    plot(rows, plan, paths["png"])
    write_hparams(runs, plan, out_dir)
    return paths


def plot(rows: list, plan: dict, path: str) -> None:
    """One panel per varied constant with numbers: the metric's mean, min and max over seeds against its value."""
    names = [
        n
        for n in (rows[0]["overrides"] if rows else {})
        if all(isinstance(r["overrides"][n], (int, float)) and not isinstance(r["overrides"][n], bool) for r in rows)
    ]
    img = Image.new("RGB", (450 * max(1, len(names)), 340), (255, 255, 255))
    draw, font = ImageDraw.Draw(img), load_font(11)
    if not names:
        draw.text((20, 20), "no numeric constant was varied", fill=(0, 0, 0), font=font)
    for i, name in enumerate(names):
        ordered = sorted(rows, key=lambda r: r["overrides"][name])
        xs = [r["overrides"][name] for r in ordered]
        series = [(k, c, [r["metric"][k] for r in ordered]) for k, c in zip(("mean", "min", "max"), COLORS)]
        axis = plan.get("axes", {}).get(name, "linear")
        plot_panel(
            draw,
            (450 * i, 0, 450 * (i + 1), 340),
            xs,
            series,
            title=name,
            ylabel=plan["metric"],
            xlabel=f"{name} ({axis} axis)",
            x_scale=AXES[axis],
            font=font,
        )
    save_png(img, path)


def write_hparams(runs: list, plan: dict, out_dir: str) -> None:
    """One ``add_hparams`` per finished run under <sweep>/.hparams/<run>, for TensorBoard's HPARAMS tab."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(os.path.join(out_dir, ".hparams")) as writer:
        for r in runs:
            if r["status"] != "finished":
                continue
            hparams = {k: v if isinstance(v, (int, float, str, bool)) else fmt(v) for k, v in r["overrides"].items()}
            values = {
                f"hparam/{k}": float(r[k])
                for k in (
                    "final_loss",
                    "smoothed_loss",
                    "final_accuracy",
                    "steps_to_target",
                    "images_per_s",
                    plan["metric"],
                )
                if r.get(k) is not None
            }
            writer.add_hparams({**hparams, "seed": r["seed"]}, values, run_name=r["run"])
