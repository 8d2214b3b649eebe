"""What a finished trial scored, read from its run folder (run.json and the TensorBoard events train.py wrote).

    final_loss        run.json's final_loss: the training loss of the last step (one batch; noisy)
    smoothed_loss     mean of train/loss over the logged points in the last quarter of the run (at least the last)
    loss_by_t         {q1..q4}: the same window's mean of loss_by_t/q*, the unweighted loss by timestep quartile
    quality_curve     run.json's in-training probe points [{"step", "joint_accuracy", "minutes"}]
    final_accuracy    joint accuracy at the last probe point; best_accuracy the highest one
    steps_to_target   the first probe step whose joint accuracy ≥ the target, or None if none did. Only as fine as
                      the probe's interval (EVAL_EVERY_STEPS): it is an upper bound, by at most one interval
    images_per_s      median of train/images_per_s, leaving out the first window (compilation, warm-up) when
                      there are more; machine-dependent, unlike the step counts

``METRICS`` maps the rankable ones to their better direction.
"""

import os
import statistics

from ddpm.files import read_json

METRICS = {
    "final_loss": "min",
    "smoothed_loss": "min",
    "final_accuracy": "max",
    "best_accuracy": "max",
    "steps_to_target": "min",
    "images_per_s": "max",
}
LAST_FRACTION = 0.25  # the window of "smoothed": the last quarter of the run's steps


def read_scalars(run_dir: str) -> dict:
    """tag → [(step, value)] from the TensorBoard event files directly in ``run_dir`` (none: {})."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # slow import, used here only

    if not any(name.startswith("events.out.tfevents") for name in os.listdir(run_dir)):
        return {}
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def window_mean(points: list, last_step: int):
    """Mean of the values logged in the last ``LAST_FRACTION`` of ``last_step`` steps (at least the last point)."""
    if not points:
        return None
    start = last_step * (1 - LAST_FRACTION)
    values = [v for s, v in points if s > start] or [points[-1][1]]
    return sum(values) / len(values)


def steps_to_target(curve: list, target: float):
    """The first probe step at which joint accuracy ≥ ``target``, or None."""
    return next(
        (p["step"] for p in curve if p.get("joint_accuracy") is not None and p["joint_accuracy"] >= target), None
    )


def trial_metrics(run_dir: str, *, target: float) -> dict:
    """The metrics above for one run folder (its run.json must exist)."""
    record = read_json(os.path.join(run_dir, "run.json"))
    scalars = read_scalars(run_dir)
    last = record.get("step") or 0
    curve = record.get("quality_curve") or []
    accuracies = [p["joint_accuracy"] for p in curve if p.get("joint_accuracy") is not None]
    speeds = [v for _, v in scalars.get("train/images_per_s", [])]
    return {
        "step": last,
        "final_loss": record.get("final_loss"),
        "smoothed_loss": window_mean(scalars.get("train/loss", []), last),
        "loss_by_t": {f"q{i}": window_mean(scalars.get(f"loss_by_t/q{i}", []), last) for i in range(1, 5)},
        "quality_curve": [{"step": p["step"], "joint_accuracy": p.get("joint_accuracy")} for p in curve],
        "final_accuracy": accuracies[-1] if accuracies else None,
        "best_accuracy": max(accuracies) if accuracies else None,
        "steps_to_target": steps_to_target(curve, target),
        "images_per_s": statistics.median(speeds[1:] if len(speeds) > 1 else speeds) if speeds else None,
    }
