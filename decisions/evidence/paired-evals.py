"""Two `make eval` readings of the same seeds, judged by ADR 0053's rule (paired by seed).

Run from the repository root, after `make eval` of both sides on each run's final checkpoint:
    .venv/bin/python decisions/evidence/paired-evals.py eval eval-dpmpp2m-20 runs/width-24-88tflop/t0-s*
    .venv/bin/python decisions/evidence/paired-evals.py --across runs/width-24-88tflop:eval-dpmpp2m-sde-12 \
        runs/logit-normal-full:eval-dpmpp2m-sde-12

The first form reads two settings on the same checkpoints: ``eval`` and ``eval-dpmpp2m-20`` are the folders `make
eval` writes inside a run (the run's own settings, and a study beside them). The second reads two sweeps, runs
named <trial>-s<seed> paired by seed, each at its folder (the seeds both have). Prints each pair's figures (seen
and held-out joint accuracy and the Fréchet distance; top-1 and top-5 retrieval on a free-text set), whether B lies
inside A's interval, and the verdicts.
"""

import glob
import json
import os
import sys

sys.path.insert(0, os.getcwd())
from ddpm.measure.intervals import compare  # noqa: E402

FIGURES = (
    ("joint_accuracy", "seen joint", True),
    ("heldout_joint_accuracy", "held-out joint", True),
    ("fd", "FD", False),
)
RETRIEVAL = (("top1", "top-1 retrieval", True), ("top5", "top-5 retrieval", True))  # free-text sets (ADR 0056)


def headline(run_dir: str, folder: str) -> dict:
    """The figures of one `make eval` reading and their intervals under "ci"; a free-text set's retrieval rates
    (top-level ``top1``, ``top5`` and their ``*_interval``) in the same shape."""
    with open(os.path.join(run_dir, folder, "eval.json")) as f:
        data = json.load(f)
    if "headline" in data:
        return data["headline"]
    return {**{k: data[k] for k, _, _ in RETRIEVAL}, "ci": {k: data[f"{k}_interval"] for k, _, _ in RETRIEVAL}}


def by_seed(sweep_dir: str, folder: str) -> dict:
    """{seed: run folder} of a sweep folder's runs, named <trial>-s<seed>, that have a reading in ``folder``;
    ``runs/clipart-pilot/w24`` (not a folder) names the runs ``runs/clipart-pilot/w24-s<seed>``."""
    pattern = os.path.join(sweep_dir, "*-s*") if os.path.isdir(sweep_dir) else sweep_dir + "-s*"
    runs = sorted(os.path.dirname(os.path.dirname(p)) for p in glob.glob(os.path.join(pattern, folder, "eval.json")))
    return {int(os.path.basename(d).rsplit("-s", 1)[1]): d for d in runs}


def judge(names: tuple, rows: dict) -> None:
    """``rows``: {label: (A's headline, B's headline)}."""
    a, b = names
    figures = RETRIEVAL if "top5" in next(iter(rows.values()))[0] else FIGURES
    for key, name, _ in figures:
        print(f"{name}:")
        for label, (ha, hb) in rows.items():
            lo, hi = ha["ci"][key]
            inside = "inside" if lo <= hb[key] <= hi else "OUTSIDE"
            print(f"  {label}: {a} {ha[key]:.3f} ({lo:.3f}-{hi:.3f})  {b} {hb[key]:.3f}  {inside} {a}'s interval")
    for key, name, higher in figures:
        r = compare([v[1][key] for v in rows.values()], [v[0][key] for v in rows.values()], higher_is_better=higher)
        print(f"{name}: {r.text(names=(b, a))}")


def main(argv: list) -> None:
    if argv[0] == "--across":
        (sweep_a, folder_a), (sweep_b, folder_b) = (arg.rsplit(":", 1) for arg in argv[1:3])
        runs_a, runs_b = by_seed(sweep_a, folder_a), by_seed(sweep_b, folder_b)
        seeds = sorted(set(runs_a) & set(runs_b))
        if not seeds:
            sys.exit(f"no seed has a reading in both {argv[1]} and {argv[2]} (<sweep or run prefix>:<eval folder>)")
        rows = {f"seed {s}": (headline(runs_a[s], folder_a), headline(runs_b[s], folder_b)) for s in seeds}
        judge(
            tuple(
                f"{os.path.basename(os.path.normpath(d))}:{f}" for d, f in ((sweep_a, folder_a), (sweep_b, folder_b))
            ),
            rows,
        )
    else:
        a, b, run_dirs = argv[0], argv[1], argv[2:]
        rows = {os.path.basename(os.path.normpath(d)): (headline(d, a), headline(d, b)) for d in run_dirs}
        judge((a, b), rows)


if __name__ == "__main__":
    main(sys.argv[1:])
