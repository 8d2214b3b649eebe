"""Two `make eval` settings read on the same checkpoints, judged by ADR 0053's rule (paired by seed).

Run from the repository root, after `make eval` of both settings on each run's final checkpoint:
    .venv/bin/python decisions/evidence/paired-evals.py eval eval-dpmpp2m-20 runs/width-24-88tflop/t0-s*

``eval`` and ``eval-dpmpp2m-20`` are the folders `make eval` writes inside a run (the run's own settings, and a study
beside them). Prints each run's three figures under both, whether B lies inside A's interval, and the verdicts.
"""

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


def headline(run_dir: str, folder: str) -> dict:
    with open(os.path.join(run_dir, folder, "eval.json")) as f:
        return json.load(f)["headline"]


def main(a: str, b: str, run_dirs: list) -> None:
    rows = {os.path.basename(os.path.normpath(d)): (headline(d, a), headline(d, b)) for d in run_dirs}
    for key, name, _ in FIGURES:
        print(f"{name}:")
        for run, (ha, hb) in rows.items():
            lo, hi = ha["ci"][key]
            inside = "inside" if lo <= hb[key] <= hi else "OUTSIDE"
            print(f"  {run}: {a} {ha[key]:.3f} ({lo:.3f}-{hi:.3f})  {b} {hb[key]:.3f}  {inside} {a}'s interval")
    for key, name, higher in FIGURES:
        r = compare([v[1][key] for v in rows.values()], [v[0][key] for v in rows.values()], higher_is_better=higher)
        print(f"{name}: {r.text(names=(b, a))}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
