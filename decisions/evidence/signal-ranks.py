"""ADR 0053's acceptance test: does the probe's prompted probability rank runs the way the final `make eval` does,
better than its 16-sample joint accuracy?

Run from the repository root, after `make eval` on each run's final checkpoint:
    .venv/bin/python decisions/evidence/signal-ranks.py runs/width-24-88tflop/t0-s*

For each probe step before the jump, Spearman's rho (with a bootstrap interval over the runs) between a run's probe
reading at that step and its final `make eval` seen joint accuracy; then the mean rho over the steps, per signal.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.getcwd())
from ddpm.measure.intervals import spearman  # noqa: E402

STEPS = (1200, 1500, 1800)  # the rule's steps: before the median run's jump to 0.9 (ADR 0053)
SIGNALS = ("prompt_prob", "joint_accuracy", "joint_prob")


def reading(run_dir: str):
    """(final seen joint accuracy from eval/eval.json, {step: probe entry}) of one run."""
    with open(os.path.join(run_dir, "eval", "eval.json")) as f:
        final = json.load(f)["headline"]["joint_accuracy"]
    with open(os.path.join(run_dir, "run.json")) as f:
        curve = {entry["step"]: entry for entry in json.load(f)["quality_curve"]}
    return final, curve


def main(run_dirs):
    runs = {os.path.basename(os.path.normpath(d)): reading(d) for d in run_dirs}
    print(f"{len(runs)} runs; final seen joint accuracy: " + ", ".join(f"{k} {v[0]:.3f}" for k, v in runs.items()))
    final = [v[0] for v in runs.values()]
    means = {}
    for signal in SIGNALS:
        rhos = []
        for step in STEPS:
            x = [v[1][step][signal] for v in runs.values()]
            rho, lo, hi = spearman(x, final)
            rhos.append(rho)
            print(
                f"{signal:>15} at {step}: rho {rho:+.2f} ({lo:+.2f} to {hi:+.2f})  readings "
                + " ".join(f"{v:.3g}" for v in x)
            )
        means[signal] = float(np.nanmean(rhos))
        print(f"{signal:>15}: mean rho over {STEPS}: {means[signal]:+.2f}")
    verdict = "adopted" if means["prompt_prob"] > means["joint_accuracy"] else "not adopted"
    print(
        f"rule: prompt_prob's mean rho {means['prompt_prob']:+.2f} against the 16-sample accuracy's "
        f"{means['joint_accuracy']:+.2f}: {verdict}"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
