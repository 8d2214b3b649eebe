"""Evaluation on real datasets: a probe that reads which caption an image was drawn for (ADR 0021).

Where captions come from a finite set (CIFAR-10's classes; a folder whose captions repeat: at most
``MAX_CLASSES`` distinct captions, each on at least ``MIN_PER_CLASS`` images), the shapes probe's network gets
one head over those captions and is trained on the dataset's own real images, less a held-out tenth (at most
``HELDOUT_MAX``); its accuracy on the held-out real images is the *ceiling*. Generated samples, n per caption,
are scored per caption and overall, and the Fréchet distance between their probe features and the held-out
real images' is reported (``fd_real``: two halves of the held-out set, its noise floor). The probe is cached
under ``runs/.probe/`` by dataset, decode-cache key and settings.

Free-text captions: accuracy does not apply. The report says so and judges by retrieval instead
(``ddpm.measure.retrieval``: is a sample nearest the very picture its caption names?), with the Fréchet distance in
the features of the same network left at its seeded random initialisation, in units of the real features' variance
(random features: comparable between checkpoints on one dataset, not an Inception FID).
"""

import collections
import json
import os
import sys
import time
from typing import Callable, Optional

import torch
import torchvision.utils as vutils

from ddpm.data.load import Loaded, load_dataset
from ddpm.files import write_json
from ddpm.measure import retrieval
from ddpm.measure.distances import frechet_distance
from ddpm.measure.probe import DEFAULT_SETTINGS, Probe, fit, load_or_train_probe, load_probe, save_probe, settings_hash
from ddpm.measure.scoring import sampling_progress

MAX_CLASSES = 100
MIN_PER_CLASS = 10
HELDOUT_FRACTION = 0.1
HELDOUT_MAX = 1000
TRAIN_MAX = 10000  # real images the probe trains on at most (CPU minutes)
SPLIT_SEED = 4242


def finite_classes(captions: list) -> Optional[list]:
    """The sorted distinct captions when they form a finite label set by the rule above, else None."""
    counts = collections.Counter(captions)
    if len(counts) > MAX_CLASSES or min(counts.values()) < MIN_PER_CLASS:
        return None
    return sorted(counts)


def split(n: int) -> tuple:
    """(train indices, held-out indices) of n images, fixed by SPLIT_SEED."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    k = min(HELDOUT_MAX, max(2, int(n * HELDOUT_FRACTION)))
    return order[k:][:TRAIN_MAX], order[:k]


class CaptionProbe:
    """A trained one-head probe over ``classes``, with the held-out real images' features for Fréchet distances."""

    def __init__(self, probe: Probe, classes: list, info: dict, real_features: torch.Tensor):
        self.probe, self.classes, self.info, self.real_features = probe, classes, info, real_features

    def score(
        self,
        pipe,
        *,
        n: int,
        guidance_scale: float,
        num_steps: int,
        seed: int,
        batch_size: int = 64,
        sampler: str = "ddim",
        eta: float = 0.0,
        progress: Optional[Callable] = None,
    ) -> dict:
        """n samples per class caption: per-caption and overall accuracy, Fréchet distance to held-out reals.
        ``progress`` wraps each batch's sampling steps (``scoring.sampling_progress``)."""
        start = time.perf_counter()
        prompts = [c for c in self.classes for _ in range(n)]
        images = (
            pipe.generate(
                prompts,
                guidance_scale=guidance_scale,
                num_steps=num_steps,
                sampler=sampler,
                eta=eta,
                seed=seed,
                batch_size=batch_size,
                **({"progress": progress} if progress else {}),
            )
            .float()
            .cpu()
        )
        probs = self.probe.probabilities(images)["caption"]  # (N, classes)
        labels = torch.arange(len(self.classes)).repeat_interleave(n)
        right = probs.argmax(1) == labels
        per = {c: right[i * n : (i + 1) * n].float().mean().item() for i, c in enumerate(self.classes)}
        feats = self.probe.features(images)
        return {
            "accuracy": right.float().mean().item(),
            "per_caption": per,
            "prompt_prob": probs.gather(1, labels.view(-1, 1)).mean().item(),
            "fd": frechet_distance(self.real_features, feats) if len(feats) >= 2 else None,
            "seconds": time.perf_counter() - start,
            "_images": images,
        }

    def quick_eval(
        self,
        pipe,
        *,
        n: int = 2,
        guidance_scale: float = 3.0,
        num_steps: int = 20,
        seed: int = 0,
        batch_size: int = 64,
        sampler: str = "ddim",
        eta: float = 0.0,
    ) -> dict:
        """The in-training check (``evaluate.quick_eval`` hands over here): flat numbers for TensorBoard."""
        s = self.score(
            pipe,
            n=n,
            guidance_scale=guidance_scale,
            num_steps=num_steps,
            seed=seed,
            batch_size=batch_size,
            sampler=sampler,
            eta=eta,
        )
        return {
            "joint_accuracy": s["accuracy"],
            "prompt_prob": s["prompt_prob"],
            "fd": s["fd"],
            "seconds": s["seconds"],
        }


def caption_probe(data: Loaded, *, cache_dir: str, image_size: int, log: Callable = print) -> Optional[CaptionProbe]:
    """The cached (or newly trained) probe of a finite-caption dataset; None for free-text captions."""
    classes = finite_classes(data.captions)
    if classes is None:
        return None
    s = {
        **DEFAULT_SETTINGS,
        "image_size": image_size,
        "heads": {"caption": len(classes)},
        "version": "caption-1",
        "dataset": data.info.get("dataset"),
        "cache_key": data.info.get("cache_key"),
        "classes": classes,
    }
    path = os.path.join(cache_dir, f"caption-probe-{settings_hash(s)}.pt")
    position = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([position[c] for c in data.captions])
    train_idx, held_idx = split(len(labels))
    held = data.images.rows(held_idx)
    try:
        probe, info = load_probe(path)
        assert info["settings"] == s
    except Exception:  # absent, unreadable or other settings: train and cache it
        log(f"training the caption probe on {len(train_idx)} real images ({len(classes)} captions)")
        t0 = time.perf_counter()
        probe = fit(
            Probe(**s),
            lambda idx: data.images.rows(train_idx[idx]),
            {"caption": labels[train_idx]},
            len(train_idx),
            s,
            log,
        )
        ceiling = (probe.predict(held)["caption"] == labels[held_idx]).float().mean().item()
        info = {
            "settings": s,
            "test_accuracy": {"caption": ceiling},
            "train_seconds": round(time.perf_counter() - t0, 2),
        }
        save_probe(probe, info, path)
    log(
        f"caption probe: ceiling {info['test_accuracy']['caption']:.3f} on {len(held_idx)} held-out real images ({path})"
    )
    return CaptionProbe(probe, classes, {**info, "file": path, "heldout": len(held_idx)}, probe.features(held))


def training_probe(data: Loaded, *, cache_dir: str, image_size: int, log: Callable = print):
    """The probe of train.py's in-training evaluation: shapes' attribute probe, a CaptionProbe, or None (skipped)."""
    if data.info.get("dataset") == "shapes":
        return load_or_train_probe(cache_dir=cache_dir, settings={"image_size": image_size}, log=log)[0]
    probe = caption_probe(data, cache_dir=cache_dir, image_size=image_size, log=log)
    if probe is None:
        log(
            f"in-training probe evaluation skipped: the captions are free text (more than {MAX_CLASSES} distinct, "
            f"or some on fewer than {MIN_PER_CLASS} images), so prompt accuracy does not apply"
        )
    return probe


def evaluate_real(
    pipe,
    train_config: dict,
    *,
    runs_root: str,
    n: int,
    guidance_scale: float,
    num_steps: int,
    seed: int,
    batch_size: int,
    log: Callable,
    sampler: str = "ddim",
    eta: float = 0.0,
) -> dict:
    """``make eval`` for a model trained on cifar10 or folder: the numbers of the module docstring."""
    from ddpm.run.settings import data_args

    data = load_dataset(
        **{**data_args(train_config), "batch_size": 1}, cache_dir=os.path.join(runs_root, ".data-cache"), log=log
    )
    probe = caption_probe(data, cache_dir=os.path.join(runs_root, ".probe"), image_size=pipe.image_size, log=log)
    if probe is None:
        log(
            f"free-text captions: prompt accuracy does not apply; retrieval instead (is the sample nearest the picture "
            f"its caption names, among all {len(data.captions):,}?), and the Fréchet distance in random CNN features"
        )
    count = len(probe.classes) * n if probe is not None else min(retrieval.QUERIES, len(data.captions))
    sampling = {"guidance_scale": guidance_scale, "num_steps": num_steps, "sampler": sampler, "batch_size": batch_size}
    with sampling_progress(pipe, count, **sampling) as counted:
        if probe is not None:
            r = probe.score(pipe, n=n, seed=seed, eta=eta, progress=counted, **sampling)
        else:
            r = retrieval.evaluate(pipe, data.images, data.captions, seed=seed, eta=eta, progress=counted, **sampling)
    if probe is not None:
        half = len(probe.real_features) // 2
        fd_real = frechet_distance(probe.real_features[:half], probe.real_features[half:]) if half >= 2 else None
        return {
            "kind": "finite captions",
            "ceiling": probe.info["test_accuracy"]["caption"],
            "accuracy": r["accuracy"],
            "per_caption": r["per_caption"],
            "fd": r["fd"],
            "fd_real": fd_real,
            "probe_file": probe.info["file"],
            "_images": r["_images"],
        }
    index = {c: i for i, c in enumerate(data.captions)}
    real = data.images.rows(torch.tensor([index[p] for p in r["_prompts"]]))
    fd = random_feature_fd(real, r["_images"], image_size=pipe.image_size)
    return {"kind": "free text", "accuracy": None, "fd": fd, **{k: v for k, v in r.items() if k != "_prompts"}}


def random_feature_fd(real: torch.Tensor, samples: torch.Tensor, *, image_size: int) -> float:
    """The Fréchet distance of (N, 3, H, W) samples to real images in the features of the probe's network at its
    seeded random initialisation, in units of the real features' mean variance. Random features have no scale of
    their own: an untrained network's are small, and the raw distance read about 1e-5 on every model (ADR 0065).
    Divided by the real set's mean variance per feature, it is 0 for the same pictures and reads on a scale that
    does not depend on the network's initial weights' size."""
    torch.manual_seed(SPLIT_SEED)
    net = Probe(**{**DEFAULT_SETTINGS, "image_size": image_size}).eval()
    f_real, f_samples = net.features(real).double(), net.features(samples).double()
    unit = f_real.var(0).mean().clamp_min(1e-30)
    return frechet_distance(f_real, f_samples) / float(unit)


def report_line(r: dict) -> str:
    if r["accuracy"] is None:
        lo1, hi1 = r["top1_interval"]
        lo5, hi5 = r["top5_interval"]
        return (
            f"accuracy=n/a (free-text captions) fd={r['fd']:.4g} top1={r['top1']:.3f} top1_lo={lo1:.3f} "
            f"top1_hi={hi1:.3f} top1_chance={r['top1_chance']:.2g} top5={r['top5']:.3f} top5_lo={lo5:.3f} "
            f"top5_hi={hi5:.3f} top5_chance={r['top5_chance']:.2g}"
        )
    fd_real = "n/a" if r["fd_real"] is None else f"{r['fd_real']:.4g}"
    return f"accuracy={r['accuracy']:.3f} ceiling={r['ceiling']:.3f} fd={r['fd']:.4g} fd_real={fd_real}"


def write(r: dict, out_dir: str) -> str:
    """eval.json and samples.png in ``out_dir``; returns the json path."""
    os.makedirs(out_dir, exist_ok=True)
    images = r["_images"]
    vutils.save_image(images * 0.5 + 0.5, os.path.join(out_dir, "samples.png"), nrow=max(1, int(len(images) ** 0.5)))
    path = os.path.join(out_dir, "eval.json")
    write_json({k: v for k, v in r.items() if not k.startswith("_")}, path)
    print(json.dumps(r.get("per_caption") or {}, indent=1), file=sys.stderr)
    return path
