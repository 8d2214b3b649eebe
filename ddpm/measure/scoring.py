"""Scoring a generator on the shapes prompts: samples drawn n per prompt, read by the probe (per-attribute and joint
accuracy, the prompted attributes' probability), their Fréchet distance to real renders of the same prompts, and
their diversity. ``evaluate`` is ``make eval``'s full evaluation of one checkpoint; ``quick_eval`` the cheap
in-training version, a fixed yardstick: train.py gives it PROBE_GUIDANCE_SCALE and PROBE_DDIM_ETA, not the
samples' GUIDANCE_SCALE and DDIM_ETA, so that its steps to a target accuracy compare across the ADRs' runs (ADR
0046, 0047).
"""

import contextlib
import math
import time
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ddpm.data.shapes import ATTRIBUTES, caption
from ddpm.measure.distances import diversity, frechet_distance
from ddpm.measure.intervals import bootstrap, jackknife, wilson
from ddpm.measure.probe import accuracy, prompted_probability
from ddpm.measure.prompts import (
    NUM_HELDOUT,
    NUM_SEEN,
    PROMPT_SEED,
    QUICK_DRAW,
    REAL_PER_PROMPT,
    REAL_SEED,
    _as_combo,
    eval_prompts,
    labels_for,
    render_real,
)
from ddpm.measure.report import fmt_number
from ddpm.progress import progress as bar_or_lines


def score(
    probe,
    images: torch.Tensor,
    combos: Sequence[tuple],
    n: int,
    features: Optional[torch.Tensor] = None,
    *,
    intervals: bool = False,
) -> dict:
    """Per-attribute accuracy, ``joint``, the prompted attributes' probability (``prompt_prob``, ``joint_prob``,
    ``<attribute>_prob``) and ``diversity`` of images generated n per combo in a row; with ``intervals``, also
    ``"interval"``: each figure's 95 % interval, Wilson's for an accuracy, the bootstrap within prompts for the
    rest (``ddpm.measure.intervals``)."""
    images = images.float().cpu()
    labels = labels_for(combos, n)
    probs = probe.probabilities(images)
    acc = accuracy({name: p.argmax(1) for name, p in probs.items()}, labels)
    feats = probe.features(images) if features is None else features
    out = {**acc, **prompted_probability(probs, labels), "diversity": diversity(feats, n)}
    if intervals:
        out["interval"] = _intervals(probs, labels, feats, n, len(images))
    return out


def _intervals(probs: dict, labels: dict, feats: torch.Tensor, n: int, total: int) -> dict:
    right = [(probs[a].argmax(1) == labels[a]).numpy() for a in ATTRIBUTES]
    k = {a: int(r.sum()) for a, r in zip(ATTRIBUTES, right)}
    k["joint"] = int(np.logical_and.reduce(right).sum())
    out = {name: list(wilson(count, total)) for name, count in k.items()}
    p_true = np.stack([probs[a].gather(1, labels[a].view(-1, 1)).squeeze(1).double().numpy() for a in ATTRIBUTES], 1)
    rows = np.concatenate([p_true, p_true.mean(1, keepdims=True), p_true.prod(1, keepdims=True)], 1)  # (N, 6)
    prompt = np.repeat(np.arange(total // n), n)
    lo, hi = bootstrap(rows, lambda r: r.mean(0), strata=prompt)
    for i, name in enumerate([f"{a}_prob" for a in ATTRIBUTES] + ["prompt_prob", "joint_prob"]):
        out[name] = [float(lo[i]), float(hi[i])]
    if n > 1:
        per_prompt = [diversity(feats[i * n : (i + 1) * n], n) for i in range(total // n)]
        out["diversity"] = list(bootstrap(np.array(per_prompt), np.mean))
    return out


# ---- generation ---------------------------------------------------------------------------------------
def generate(
    pipe,
    combos: Sequence[tuple],
    n: int,
    *,
    guidance_scale: float,
    num_steps: int,
    seed: int,
    batch_size: int = 64,
    sampler: str = "ddim",
    eta: float = 0.0,
    progress: Optional[Callable] = None,
) -> torch.Tensor:
    """n images per combo, in order, from ``pipe.generate`` (``sampler``; DDIM's η), float32 on CPU. ``progress``
    wraps each batch's iterator of sampling steps (a shared bar)."""
    prompts = [caption(*c) for c in combos for _ in range(n)]
    images = pipe.generate(
        prompts,
        guidance_scale=guidance_scale,
        num_steps=num_steps,
        sampler=sampler,
        eta=eta,
        seed=seed,
        batch_size=batch_size,
        **({"progress": progress} if progress else {}),
    )
    images = images.float().cpu()
    if images.shape[0] != len(prompts):
        raise RuntimeError(f"generate() returned {images.shape[0]} images for {len(prompts)} prompts")
    return images


def quick_eval(
    pipe_like,
    probe,
    *,
    prompts: Optional[Sequence] = None,
    n: int = 2,
    guidance_scale: float = 3.0,
    num_steps: int = 20,
    seed: int = 0,
    batch_size: int = 64,
    sampler: str = "ddim",
    eta: float = 0.0,
) -> dict:
    """The cheap in-training check: n samples for each prompt (captions or attribute tuples; default: 4 seen
    and 4 held-out evaluation prompts), scored by the probe. Returns flat floats for logging:
    ``joint_accuracy``, ``<attribute>_accuracy``, ``diversity`` (None when n < 2), ``fd`` against real renders
    of the same prompts (few samples: compare it only between steps of one run), ``seconds``. ``eta``: DDIM's η
    (train.py passes PROBE_DDIM_ETA, 0 by default, whatever the samples' DDIM_ETA: ADR 0046, 0047).
    """
    if hasattr(probe, "quick_eval"):  # a real dataset's caption probe (ddpm.measure.caption_probe)
        return probe.quick_eval(
            pipe_like,
            n=n,
            guidance_scale=guidance_scale,
            num_steps=num_steps,
            seed=seed,
            batch_size=batch_size,
            sampler=sampler,
            eta=eta,
        )
    start = time.perf_counter()
    if prompts is None:  # the yardstick of every in-training curve since ADR 0008: kept whatever make eval draws
        seen, held = eval_prompts(*QUICK_DRAW)
        combos = seen[:4] + held[:4]
    else:
        combos = [_as_combo(p) for p in prompts]
    if not combos:
        raise ValueError("quick_eval needs at least one prompt")
    images = generate(
        pipe_like,
        combos,
        n,
        guidance_scale=guidance_scale,
        num_steps=num_steps,
        seed=seed,
        batch_size=batch_size,
        sampler=sampler,
        eta=eta,
    )
    feats = probe.features(images)
    s = score(probe, images, combos, n, features=feats)
    out = {
        "joint_accuracy": s["joint"],
        **{f"{name}_accuracy": s[name] for name in ATTRIBUTES},
        **{k: s[k] for k in ("prompt_prob", "joint_prob", *(f"{name}_prob" for name in ATTRIBUTES))},
        "diversity": s["diversity"],
    }
    real = render_real(combos, n, seed=REAL_SEED, image_size=images.shape[-1])
    out["fd"] = frechet_distance(probe.features(real), feats) if len(images) >= 2 else None
    out["seconds"] = time.perf_counter() - start
    return out


def evaluate(
    pipe,
    probe,
    *,
    n: int = 8,
    guidance_scale: float = 3.0,
    num_steps: int = 50,
    seed: int = 0,
    sweep: Sequence[float] = (),
    batch_size: int = 64,
    image_size: int = 32,
    num_seen: int = NUM_SEEN,
    num_heldout: int = NUM_HELDOUT,
    log: Callable = print,
    sampler: str = "ddim",
    eta: float = 0.0,
    progress: bool = False,
) -> dict:
    """The full evaluation of one generator, every figure with its 95 % interval (``"interval"`` beside each set's
    figures, ``fd_interval``); returns the results dict (images under ``"_images"``). ``progress``: a bar over the
    sampling steps of all batches."""
    seen, held = eval_prompts(num_seen, num_heldout)
    combos = seen + held
    k_seen = len(seen) * n

    # The ceiling: the probe on real renders of the same prompts.
    per = max(REAL_PER_PROMPT, 2 * n)
    real = render_real(combos, per, seed=REAL_SEED, image_size=image_size)
    real_feats = probe.features(real)
    ceiling_seen = score(probe, real[: len(seen) * per], seen, per, features=real_feats[: len(seen) * per])
    ceiling_held = score(probe, real[len(seen) * per :], held, per, features=real_feats[len(seen) * per :])
    # FD references: the first n and the next n real renders of each prompt (same count as generated).
    grouped = real_feats.reshape(len(combos), per, -1)
    ref_a, ref_b = grouped[:, :n].reshape(-1, grouped.shape[-1]), grouped[:, n : 2 * n].reshape(-1, grouped.shape[-1])
    fd_real = frechet_distance(ref_a, ref_b) if len(ref_a) >= 2 else None
    log(
        f"ceiling (probe on real renders of the prompts): seen joint={ceiling_seen['joint']:.4f} "
        f"held-out joint={ceiling_held['joint']:.4f}; real-vs-real Fréchet distance="
        + ("n/a (one sample a prompt)" if fd_real is None else f"{fd_real:.2f}")
    )

    def run_at(scale: float) -> dict:
        t0 = time.perf_counter()
        with sampling_progress(
            pipe,
            len(combos) * n,
            guidance_scale=scale,
            num_steps=num_steps,
            sampler=sampler,
            batch_size=batch_size,
            show=progress,
        ) as counted:
            images = generate(
                pipe,
                combos,
                n,
                guidance_scale=scale,
                num_steps=num_steps,
                seed=seed,
                batch_size=batch_size,
                sampler=sampler,
                eta=eta,
                progress=counted,
            )
        feats = probe.features(images)
        r = {
            "guidance_scale": scale,
            "seen": score(probe, images[:k_seen], seen, n, features=feats[:k_seen], intervals=True),
            "heldout": score(probe, images[k_seen:], held, n, features=feats[k_seen:], intervals=True),
            "diversity": diversity(feats, n),
            "fd": frechet_distance(ref_a, feats) if len(feats) >= 2 else None,
            "fd_interval": list(fd_interval(feats, ref_a, len(combos))),
            "seconds": round(time.perf_counter() - t0, 2),
            "_images": images,
        }
        iv = r["seen"]["interval"]
        log(
            f"guidance {scale:g}: seen joint={r['seen']['joint']:.4f} ({iv['joint'][0]:.3f}-{iv['joint'][1]:.3f}) "
            f"held-out joint={r['heldout']['joint']:.4f} fd={fmt_number(r['fd'])} "
            f"diversity={fmt_number(r['diversity'])} ({r['seconds']:.1f} s, {len(images)} images)"
        )
        return r

    main_run = run_at(guidance_scale)
    sweep_runs = []
    for scale in sweep:
        r = main_run if math.isclose(scale, guidance_scale) else run_at(scale)
        sweep_runs.append({k: v for k, v in r.items() if k != "_images"})

    results = {
        "settings": {
            "n": n,
            "guidance_scale": guidance_scale,
            "num_steps": num_steps,
            "seed": seed,
            "sampler": sampler,
            "eta": eta,
            "sweep": list(sweep),
            "batch_size": batch_size,
            "image_size": image_size,
            "prompt_seed": PROMPT_SEED,
            "real_seed": REAL_SEED,
            "real_per_prompt": per,
            "seen_prompts": [caption(*c) for c in seen],
            "heldout_prompts": [caption(*c) for c in held],
            "intervals": "95 %: Wilson for accuracies; a bootstrap within prompts for the probabilities and over "
            "prompts for diversity; the delete-one-prompt jackknife for the Fréchet distance",
        },
        "ceiling": {"seen": ceiling_seen, "heldout": ceiling_held},
        "seen": main_run["seen"],
        "heldout": main_run["heldout"],
        "fd": main_run["fd"],
        "fd_interval": main_run["fd_interval"],
        "fd_real": fd_real,
        "diversity": main_run["diversity"],
        "diversity_real": diversity(ref_a, n),
        "sweep": sweep_runs,
        "seconds": main_run["seconds"],
        "_images": main_run["_images"],
        "_num_seen": len(seen),
    }
    results["headline"] = headline_numbers(results)
    return results


def fd_interval(feats: torch.Tensor, ref: torch.Tensor, prompts: int) -> tuple:
    """The Fréchet distance's 95 % interval: the jackknife over prompts, each left out of the samples and of the
    real reference alike (both hold the prompts in the same order, the same count of rows each)."""
    gen, real = feats.reshape(prompts, -1, feats.shape[-1]), ref.reshape(prompts, -1, ref.shape[-1])
    keep = np.arange(prompts)

    def fd_without(p):
        rows = keep if p is None else keep[keep != p]
        return frechet_distance(real[rows].reshape(-1, real.shape[-1]), gen[rows].reshape(-1, gen.shape[-1]))

    return jackknife(range(prompts), fd_without)


@contextlib.contextmanager
def sampling_progress(
    pipe, images: int, *, guidance_scale: float, num_steps: int, sampler: str, batch_size: int, show: bool = True
):
    """A bar (or, off a terminal, a line now and then) over the sampling steps of ``images`` images drawn in batches
    of ``batch_size``; yields the ``progress`` wrapper that ``pipe.generate`` takes, or None when not ``show``."""
    steps_each = pipe.diffusion.timesteps if sampler == "ddpm" else num_steps
    total = -(-images // batch_size) * steps_each
    desc = f"sampling at guidance {guidance_scale:g}"
    with bar_or_lines(total=total, desc=desc, unit="step", leave=False, show=show) as bar:
        yield (lambda steps: _counted(steps, bar)) if show else None


def _counted(steps, bar):
    for t in steps:
        yield t
        bar.update(1)


def headline_numbers(results: dict) -> dict:
    """The figures make eval prints last and run.json keeps, each with its 95 % interval under ``"ci"``."""
    seen, held = results["seen"], results["heldout"]
    return {
        "joint_accuracy": seen["joint"],
        "ceiling": results["ceiling"]["seen"]["joint"],
        "heldout_joint_accuracy": held["joint"],
        "heldout_ceiling": results["ceiling"]["heldout"]["joint"],
        "prompt_prob": seen["prompt_prob"],
        "heldout_prompt_prob": held["prompt_prob"],
        "fd": results["fd"],
        "fd_real": results["fd_real"],
        "diversity": results["diversity"],
        "ci": {
            "joint_accuracy": seen["interval"]["joint"],
            "heldout_joint_accuracy": held["interval"]["joint"],
            "prompt_prob": seen["interval"]["prompt_prob"],
            "heldout_prompt_prob": held["interval"]["prompt_prob"],
            "fd": results["fd_interval"],
        },
    }


def headline_line(numbers: dict) -> str:
    """``key=value`` pairs on one line, each figure that has an interval followed by ``key_lo=… key_hi=…``; floats
    below 1 get 3 decimals, others 4 significant digits."""
    ci = numbers.get("ci", {})
    return " ".join(
        f"{k}={fmt_number(v)}" + (f" {k}_lo={fmt_number(ci[k][0])} {k}_hi={fmt_number(ci[k][1])}" if k in ci else "")
        for k, v in numbers.items()
        if k != "ci"
    )
