"""ADR 0060's reading: two sweeps' probe curves, seed by seed, over the steps the shorter one trained.

Run from the repository root:
    .venv/bin/python decisions/evidence/0060-curves.py runs/width-24-88tflop runs/logit-normal-1300 [last_step]

Each argument is a sweep folder whose runs are named <trial>-s<seed>. For each
run: the mean probe prompt probability over the probe points up to ``last_step`` (default: the last point both
have; the area under its curve), the joint accuracy there, and the first step at which joint accuracy reads
≥ 0.9. Seeds present in both that reached ``last_step`` are paired. Then ADR 0053's paired verdicts, second folder
against the first, on the mean prompt probability (ADR 0060's primary figure), on the joint accuracy at
``last_step``, and on the first step at ≥ 0.9 (ADRs 0062 and 0063's primary; a run that never reads it by
``last_step`` counts as the probe after it: 1,400 for 1,300, 2,600 for 2,496).

With ``--images`` (ADR 0066: two batch sizes), each probe point is placed at the images its run had seen (step ×
its BATCH_SIZE) instead of its step, ``last_step`` is read as images, and "first at ≥ 0.9" is in images (a run that
never reads it counts as the second folder's next probe after ``last``):
    .venv/bin/python decisions/evidence/0060-curves.py --images runs/width-24-88tflop runs/batch-64 79872
"""

import glob
import json
import math
import os
import statistics
import sys

sys.path.insert(0, os.getcwd())
from ddpm.measure.intervals import compare  # noqa: E402


def curves(sweep_dir: str, images: bool = False) -> dict:
    """{seed: {step: probe point}} of a sweep folder's runs (a resumed run's repeated points: the last wins); keyed
    by images seen (step × BATCH_SIZE) instead when ``images``."""
    out = {}
    for path in sorted(glob.glob(os.path.join(sweep_dir, "*-s*", "run.json"))):
        seed = int(os.path.basename(os.path.dirname(path)).rsplit("-s", 1)[1])
        with open(path) as f:
            run = json.load(f)
        per = run["config"]["BATCH_SIZE"] if images else 1
        out[seed] = {p["step"] * per: p for p in run.get("quality_curve", [])}
    return out


def first_at(curve: dict, last: int, target: float = 0.9):
    return next((s for s in sorted(curve) if s <= last and curve[s]["joint_accuracy"] >= target), None)


def main(a_dir: str, b_dir: str, last_step: int = None, images: bool = False) -> None:
    a, b = curves(a_dir, images), curves(b_dir, images)
    last = last_step or min(max(c) for c in b.values())
    seeds = sorted(s for s in set(a) & set(b) if last in a[s] and last in b[s])  # a run cut short is left out
    rows = []
    for s in seeds:
        steps = [k for k in sorted(b[s]) if k <= last and k in a[s]]
        area = [statistics.mean(c[s][k]["prompt_prob"] for k in steps) for c in (a, b)]
        joint = [c[s][last]["joint_accuracy"] for c in (a, b)]
        rows.append((s, area, joint, [first_at(c[s], last) for c in (a, b)], len(steps)))
    names = (os.path.basename(os.path.normpath(b_dir)), os.path.basename(os.path.normpath(a_dir)))
    print(f"seed | mean prompt prob to {last} ({names[1]} → {names[0]}) | joint at {last} | first ≥ 0.9 | points")
    for s, area, joint, first, n in rows:
        print(f"{s} | {area[0]:.3f} → {area[1]:.3f} | {joint[0]} → {joint[1]} | {first[0]} → {first[1]} | {n}")
    for i, name in ((1, names[1]), (0, names[0])):
        print(f"{name}: median joint at {last} {statistics.median(r[2][1 - i] for r in rows):.2f}")
    r = compare([r[1][1] for r in rows], [r[1][0] for r in rows], higher_is_better=True)
    print(f"mean prompt prob to {last}: {r.text(names=names)}")
    r = compare([r[2][1] for r in rows], [r[2][0] for r in rows], higher_is_better=True)
    print(f"joint accuracy at {last}: {r.text(names=names)}")
    if images:  # the second folder's next probe after the end
        steps_b = sorted(next(iter(b.values())))
        never = last + steps_b[-1] - steps_b[-2]
    else:
        never = math.ceil(last / 100) * 100 + 100  # a run that never reads 0.9 counts as the next probe after the end
    first = [[never if f is None else f for f in r[3]] for r in rows]
    r = compare([f[1] for f in first], [f[0] for f in first], higher_is_better=False)
    print(f"first {'images' if images else 'step'} at ≥ 0.9 (never = {never}): {r.text(names=names)}")


if __name__ == "__main__":
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(args[0], args[1], int(args[2]) if len(args) > 2 else None, images="--images" in flags)
