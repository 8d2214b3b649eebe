"""Finished sweeps side by side, per attribute the probe reads: ``python -m ddpm.experiments.compare runs/a runs/b``
(``make compare SWEEPS="runs/a runs/b"``).

A sweep's results.md ranks its own points by one metric. An ablation or a control compares points of several sweeps,
often at different batch sizes (ADR 0010 changed the batch), and at a budget where the joint accuracy has not
jumped yet but its parts have: the colour and the background are learned by step 1,500, the shape is not. So this
table reads every seed's TensorBoard ``eval/*`` and gives, per point (``<sweep>/<trial>``) and attribute:

    set             the constants the sweeps set (spec [base] and the trial's values) that differ between points
    final           the probe's last reading: joint, shape, colour, background and size accuracy, Fréchet distance
    images to ≥ x   the first probe step at which the attribute's accuracy reached ``x``, times the batch size:
                    thousands of training images, the compute at one model size, whatever the batch and machine.
                    Only as fine as the probe's interval; "n/N" when only n of the N seeds got there

Each cell is mean (min / median / max) over the seeds that finished, as in results.md. Below the tables, each pair
of points on one final reading (``--metric``, the joint accuracy by default): the difference with its 95 %
interval over seeds, paired by seed where the points share them, and the verdict, "A better", "B better" or "not
resolved: about N seeds would resolve a difference of this size" (ddpm/measure/intervals.py, ADR 0053).
"""

from __future__ import annotations

import argparse
import os
import sys

from ddpm.cli import command_line, error
from ddpm.decisions.adr import fmt
from ddpm.experiments.metrics import read_scalars
from ddpm.experiments.results import describe, spread
from ddpm.files import read_json
from ddpm.measure.intervals import compare

ATTRIBUTES = ("joint", "shape", "color", "background", "size")  # eval/<name>_accuracy, as ddpm.measure.probe logs them
THRESHOLD = 0.9


class CompareError(ValueError):
    pass


def seed_record(run_dir: str, threshold: float) -> dict:
    """One finished run: {"batch", "step", "final": {attr: acc, "fd": x}, "images_to": {attr: images or None}}."""
    record = read_json(os.path.join(run_dir, "run.json"))
    batch = int((record.get("config") or {}).get("BATCH_SIZE") or 0)
    scalars = read_scalars(run_dir)
    final, images_to = {}, {}
    for attr in ATTRIBUTES:
        points = scalars.get(f"eval/{attr}_accuracy", [])
        final[attr] = points[-1][1] if points else None
        # TensorBoard keeps float32: 0.9 comes back as 0.8999999762, which must still count as 0.9
        images_to[attr] = next((step * batch for step, value in points if value >= threshold - 1e-6), None)
    for key in ("fd", "prompt_prob"):  # the probe's distance, and its continuous signal (ADR 0053)
        points = scalars.get(f"eval/{key}", [])
        final[key] = points[-1][1] if points else None
    seed = (record.get("config") or {}).get("SEED")
    return {"seed": seed, "batch": batch, "step": record.get("step"), "final": final, "images_to": images_to}


METRICS = {
    "joint": True,
    "shape": True,
    "color": True,
    "background": True,
    "size": True,
    "prompt_prob": True,
    "fd": False,
}  # metric → whether higher is better


def verdicts(points: list, metric: str) -> list:
    """One line per pair of points on the final ``metric``: the difference with its 95 % interval over seeds
    (paired by seed where both points have the same seeds) and the verdict (ddpm/measure/intervals.py)."""
    lines = []
    for i, a in enumerate(points):
        for b in points[i + 1 :]:
            va = {r["seed"]: r["final"].get(metric) for r in a["runs"]}
            vb = {r["seed"]: r["final"].get(metric) for r in b["runs"]}
            paired = set(va) == set(vb) and None not in va
            keys = sorted(va) if paired else None
            c = compare(
                [va[k] for k in keys] if paired else list(va.values()),
                [vb[k] for k in keys] if paired else list(vb.values()),
                higher_is_better=METRICS[metric],
                paired=paired,
            )
            lines.append(f"- {c.text((a['point'], b['point']), fmt=lambda v: f'{v:+.4g}')}")
    return lines


def sweep_points(sweep_dir: str, threshold: float) -> list:
    """[{"point": "<sweep>/<trial>", "overrides", "runs": [seed_record]}] for each trial of a finished sweep."""
    path = os.path.join(sweep_dir, "results.json")
    if not os.path.isfile(path):
        raise CompareError(f"{sweep_dir}: no results.json; compare takes finished sweeps (make sweep SPEC=...)")
    results = read_json(path)
    name = results.get("name") or os.path.basename(os.path.normpath(sweep_dir))
    points = []
    for row in results.get("rows") or []:
        runs = [
            seed_record(os.path.join(sweep_dir, r["run"]), threshold)
            for r in row["runs"]
            if r.get("status") == "finished"
        ]
        points.append(
            {
                "point": f"{name}/{row['trial']}",
                "overrides": {**(results.get("base") or {}), **row["overrides"]},
                "seeds": len(row["runs"]),
                "runs": runs,
            }
        )
    return points


def _cell(values: list, *, reached: bool = False, scale: float = 1.0) -> str:
    s = spread([None if v is None else v / scale for v in values])
    text = describe(s)
    if reached and s["missing"]:
        text = f"{text}, {s['n']}/{len(values)}" if s["n"] else f"not reached, 0/{len(values)}"
    return text


def table(points: list, threshold: float = THRESHOLD) -> str:
    """Two Markdown tables: the final readings, and the thousands of images to each attribute's threshold."""
    keys = sorted({k for p in points for k in p["overrides"]})
    differing = [k for k in keys if len({repr(p["overrides"].get(k)) for p in points}) > 1]
    final_head = ["point", "set", "batch", "steps", "seeds", *ATTRIBUTES, "Fréchet distance"]
    to_head = ["point", *(f"{a} ≥ {threshold:g}" for a in ATTRIBUTES)]
    lines = [
        "Final probe reading, mean (min / median / max) over seeds:",
        "",
        "| " + " | ".join(final_head) + " |",
        "|---|" + "---:|" * (len(final_head) - 1),
    ]
    for p in points:
        runs = p["runs"]
        batches = sorted({r["batch"] for r in runs})
        steps = sorted({r["step"] for r in runs if r["step"] is not None})
        settings = ", ".join(f"{k}={fmt(p['overrides'][k])}" for k in differing if k in p["overrides"]) or "-"
        lines.append(
            "| "
            + " | ".join(
                [
                    p["point"],
                    settings,
                    "/".join(map(str, batches)) or "?",
                    "/".join(map(str, steps)) or "?",
                    f"{len(runs)}/{p['seeds']}",
                    *(_cell([r["final"][a] for r in runs]) for a in ATTRIBUTES),
                    _cell([r["final"]["fd"] for r in runs]),
                ]
            )
            + " |"
        )
    lines += [
        "",
        f"Thousands of training images until the probe first read ≥ {threshold:g} (probe step × batch):",
        "",
        "| " + " | ".join(to_head) + " |",
        "|---|" + "---:|" * (len(to_head) - 1),
    ]
    for p in points:
        cells = [
            _cell([r["images_to"][a] for r in p["runs"]], reached=True, scale=1000.0)
            if any(r["final"][a] is not None for r in p["runs"])
            else "—"  # never probed: not "not reached"
            for a in ATTRIBUTES
        ]
        lines.append("| " + " | ".join([p["point"], *cells]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ddpm.experiments.compare",
        description="Finished sweeps side by side, per probe attribute, over seeds.",
    )
    parser.add_argument("sweeps", nargs="+", help="sweep folders (runs/<name>), each with its results.json")
    parser.add_argument(
        "--metric",
        choices=sorted(METRICS),
        default="joint",
        help="the final probe reading each pair is judged on (default: %(default)s)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=THRESHOLD,
        help="accuracy whose first reading counts as reached (default: %(default)s)",
    )
    args = parser.parse_args(command_line(argv))
    if not 0.0 < args.threshold <= 1.0:
        parser.error(f"--threshold {args.threshold}: an accuracy in (0, 1]")
    try:
        points = [p for d in args.sweeps for p in sweep_points(d, args.threshold)]
    except CompareError as err:
        return error("compare", str(err))
    pairs = verdicts(points, args.metric)
    print(f'`make compare SWEEPS="{" ".join(args.sweeps)}"`\n\n{table(points, args.threshold)}')
    if pairs:
        print(
            f"\nEach pair on the final {args.metric}: the difference with its 95 % interval over seeds, and the "
            "verdict:\n\n" + "\n".join(pairs)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
