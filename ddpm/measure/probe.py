"""A small CNN probe that reads the attributes of a shapes image: the judge of generated samples.

One convolutional trunk, one linear head per attribute in ``data.ATTRIBUTES`` (shape, color, background,
size). It is trained on real images of every combination (``split="all"``, so that held-out (shape, colour)
pairs are readable too) drawn with a seed of its own, distinct from the training data's, for a few epochs on
CPU, and checked on another fresh real set: that accuracy is the ceiling a perfect generator would reach.

The trained probe is cached in one file whose name holds a hash of its settings (``probe_path``), written
atomically (temporary file in the same folder, then ``os.replace``) and read back with
``torch.load(..., weights_only=True)``. ``features`` (the penultimate layer) feed the Fréchet distance and
the diversity measure of ``ddpm.measure.evaluate``.
"""

import hashlib
import json
import os
import time
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ddpm.data.shapes import ATTRIBUTES, make_shapes_dataset
from ddpm.files import atomic_write
from ddpm.progress import progress

# Every setting that changes the trained probe; the cache file name hashes these.
DEFAULT_SETTINGS = {
    "version": 2,  # bump when the architecture or the training recipe changes
    "image_size": 32,
    "width": 16,  # channels of the first conv stage; later stages double it
    "feature_dim": 128,
    "train_size": 8000,
    "train_seed": 918_273,  # distinct from config.DATASET_SEED (1234) and from the test seed
    "test_size": 1000,
    "test_seed": 564_738,
    "epochs": 6,
    "batch_size": 64,
    "lr": 3e-3,
    "noise_aug": 0.05,  # std of the Gaussian pixel noise added in training, for robustness to generated images
}


class Probe(nn.Module):
    """images (N, 3, H, W) in [-1, 1] → features (N, feature_dim) → one logit vector per attribute."""

    def __init__(self, *, image_size: int, width: int, feature_dim: int, heads: Optional[dict] = None, **_ignored):
        super().__init__()
        self.image_size = image_size
        w = width

        def block(c_in, c_out, stride):
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())

        self.trunk = nn.Sequential(
            block(3, w, 1),  # 32×32
            block(w, 2 * w, 2),
            block(2 * w, 2 * w, 1),  # 16×16
            block(2 * w, 4 * w, 2),
            block(4 * w, 4 * w, 1),  # 8×8
            block(4 * w, 4 * w, 2),  # 4×4
        )
        # Flattened 4×4 map (where things are, for shape and size) plus global mean and max pooling.
        self.fc = nn.Sequential(nn.Linear(4 * w * (16 + 2), feature_dim), nn.ReLU())
        heads = heads or {name: len(values) for name, values in ATTRIBUTES.items()}  # head name → classes
        self.heads = nn.ModuleDict({name: nn.Linear(feature_dim, k) for name, k in heads.items()})

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        grid = F.adaptive_avg_pool2d(h, 4)  # 4×4 at 32×32 input; the same size for other image sizes
        pooled = torch.cat([grid.flatten(1), h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.fc(pooled)

    def forward(self, x: torch.Tensor):
        f = self._features(x)
        return f, {name: head(f) for name, head in self.heads.items()}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def _batched(self, images: torch.Tensor, fn: Callable, batch_size: int):
        was_training = self.training
        self.eval()
        try:
            outs = [
                fn(images[i : i + batch_size].to(self.device, torch.float32)) for i in range(0, len(images), batch_size)
            ]
        finally:
            self.train(was_training)
        return outs

    def features(self, images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        """Penultimate-layer features (N, feature_dim), float32 on CPU."""
        outs = self._batched(images, self._features, batch_size)
        return torch.cat(outs).float().cpu() if outs else torch.zeros(0, self.fc[0].out_features)

    def probabilities(self, images: torch.Tensor, *, batch_size: int = 256) -> dict:
        """head → (N, K) softmax probabilities over the head's K classes, float32 on CPU."""
        outs = self._batched(
            images, lambda x: {k: v.float().softmax(1).cpu() for k, v in self(x)[1].items()}, batch_size
        )
        return {
            name: torch.cat([o[name] for o in outs]) if outs else torch.zeros(0, self.heads[name].out_features)
            for name in self.heads
        }

    def predict(self, images: torch.Tensor, *, batch_size: int = 256) -> dict:
        """head → (N,) long predicted class indices (for shapes: indices into ``ATTRIBUTES[attribute]``), on CPU."""
        return {name: p.argmax(1) for name, p in self.probabilities(images, batch_size=batch_size).items()}


def accuracy(pred: dict, labels: dict) -> dict:
    """Per-attribute accuracy and ``joint`` (all attributes right) of predictions against labels."""
    right = [pred[name] == labels[name].cpu() for name in ATTRIBUTES]
    out = {name: r.float().mean().item() for name, r in zip(ATTRIBUTES, right)}
    out["joint"] = torch.stack(right).all(0).float().mean().item()
    return out


def prompted_probability(probs: dict, labels: dict) -> dict:
    """The continuous companion of ``accuracy``, from the same probe outputs: for each attribute the probe's mean
    probability of the prompted value (``<attribute>_prob``), their mean over attributes (``prompt_prob``), and
    the mean over images of their product (``joint_prob``, the smooth counterpart of ``joint``). A sample that is
    nearly right moves these before it crosses the probe's decision boundary, so they move before accuracy jumps.
    ``probs``: head → (N, K); ``labels``: head → (N,) long."""
    p_true = [probs[name].gather(1, labels[name].cpu().view(-1, 1)).squeeze(1).double() for name in ATTRIBUTES]
    out = {f"{name}_prob": p.mean().item() for name, p in zip(ATTRIBUTES, p_true)}
    out["prompt_prob"] = sum(out.values()) / len(p_true)
    out["joint_prob"] = torch.stack(p_true).prod(0).mean().item()
    return out


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def probe_path(cache_dir: str, settings: Optional[dict] = None) -> str:
    """``<cache_dir>/probe-<hash of settings>.pt``; settings default to ``DEFAULT_SETTINGS``."""
    return os.path.join(cache_dir, f"probe-{settings_hash(dict(settings or DEFAULT_SETTINGS))}.pt")


def train_probe(settings: Optional[dict] = None, *, log: Optional[Callable] = None, **overrides):
    """Train a probe on fresh real images; returns (probe in eval mode, info dict with its test accuracy).

    ``overrides`` change single settings (tests use small sizes). Deterministic for given settings.
    """
    s = {**DEFAULT_SETTINGS, **(settings or {}), **overrides}
    log = log or (lambda msg: None)
    start = time.perf_counter()
    torch.manual_seed(s["train_seed"])
    train = make_shapes_dataset(size=s["train_size"], seed=s["train_seed"], image_size=s["image_size"], split="all")
    test = make_shapes_dataset(size=s["test_size"], seed=s["test_seed"], image_size=s["image_size"], split="all")
    probe = fit(Probe(**s), lambda idx: train.images[idx], train.labels, len(train), s, log)
    acc = accuracy(probe.predict(test.images), test.labels)
    info = {"settings": s, "test_accuracy": acc, "train_seconds": round(time.perf_counter() - start, 2)}
    log("probe test accuracy: " + " ".join(f"{k}={v:.4f}" for k, v in acc.items()))
    return probe, info


def fit(probe: Probe, batch: Callable, labels: dict, n: int, s: dict, log: Callable) -> Probe:
    """Train ``probe`` (one cross-entropy per head, summed) on n real images, ``batch(idx)`` → (B, 3, H, W) in
    [-1, 1], ``labels``: head → (n,) long; AdamW with one-cycle lr and Gaussian pixel noise. Returns it in eval mode."""
    total = -(-n // s["batch_size"]) * s["epochs"]
    opt = torch.optim.AdamW(probe.parameters(), lr=s["lr"], weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s["lr"], total_steps=total, pct_start=0.2)
    gen = torch.Generator().manual_seed(s["train_seed"])
    probe.train()
    bar = progress(total=total, desc="training the probe", unit="batch", leave=False)
    for epoch in range(s["epochs"]):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, s["batch_size"]):
            bar.update(1)
            idx = order[i : i + s["batch_size"]]
            x = batch(idx)
            if s["noise_aug"] > 0:
                x = x + s["noise_aug"] * torch.rand(len(x), 1, 1, 1, generator=gen) * torch.randn(
                    x.shape, generator=gen
                )
            _, logits = probe(x)
            loss = sum(F.cross_entropy(logits[name], labels[name][idx]) for name in probe.heads)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        log(f"probe epoch {epoch + 1}/{s['epochs']}: loss {loss.item():.4f}")
    bar.close()
    return probe.eval()


def save_probe(probe: Probe, info: dict, path: str) -> None:
    """Write {state_dict, info} atomically (``ddpm.files.atomic_write``)."""
    atomic_write(path, lambda tmp: torch.save({"state_dict": probe.state_dict(), "info": info}, tmp))


def load_probe(path: str):
    """(probe in eval mode on CPU, info) from a file written by ``save_probe``."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    probe = Probe(**blob["info"]["settings"])
    probe.load_state_dict(blob["state_dict"])
    probe.eval()
    return probe, blob["info"]


def load_or_train_probe(
    path: Optional[str] = None,
    *,
    cache_dir: Optional[str] = None,
    settings: Optional[dict] = None,
    log: Optional[Callable] = None,
):
    """The cached probe at ``path`` (default ``probe_path(cache_dir, settings)``), trained and cached if absent.

    Returns (probe, info). A cache file that cannot be read is retrained and overwritten.
    """
    s = {**DEFAULT_SETTINGS, **(settings or {})}
    if path is None:
        if cache_dir is None:
            raise ValueError("give the probe's cache file path or a cache_dir")
        path = probe_path(cache_dir, s)
    if os.path.isfile(path):
        try:
            probe, info = load_probe(path)
            if info.get("settings") == s:
                return probe, info
        except Exception as err:  # a truncated or foreign file: retrain rather than fail
            (log or print)(f"probe cache {path} unreadable ({err}); retraining")
    probe, info = train_probe(s, log=log)
    save_probe(probe, info, path)
    return probe, info
