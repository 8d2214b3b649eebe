"""Does a sample show the picture its caption names? Retrieval among the real pictures, for free-text captions.

A probe classifier needs captions that repeat (ADR 0021); a set like Open Clip Art's (``make clipart``) has one
caption per picture. So the judge asks, for each sample drawn for the caption of real picture i: among all N real
pictures, how near to the sample is picture i? Its rank is the number of real pictures nearer to the sample than
the nearest picture carrying that caption (0: it is the nearest). Reported: the top-1 and top-5 rates (rank < 1,
rank < 5) with Wilson intervals, and chance beside them (the rate a sample unrelated to its caption would get: m/N
and 5·m/N for a caption carried by m pictures, averaged).

The feature space: each image, in [-1, 1], averaged down to ``FEATURE_SIZE`` × ``FEATURE_SIZE`` pixels in RGB,
compared by Euclidean distance: the layout and colours of a drawing at a glance, which a model that learned the
picture reproduces and one that learned only the caption's colours does not. It needs no pretrained network
(nothing can be downloaded here), and is the same on every machine.
"""

import numpy as np
import torch
import torch.nn.functional as F

from ddpm.measure.intervals import wilson

FEATURE_SIZE = 16
QUERIES = 256  # captions sampled for a make eval: top-1 within about ±0.03 near 0.1


def features(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] → (N, 3·FEATURE_SIZE²) float32: each image averaged down to FEATURE_SIZE pixels."""
    return F.adaptive_avg_pool2d(images.float(), FEATURE_SIZE).flatten(1)


def ranks(samples: torch.Tensor, reals: torch.Tensor, wanted: list) -> np.ndarray:
    """For sample k (features (K, F)) and its set of real rows ``wanted[k]``, how many real rows (of (N, F)) are
    nearer to it than the nearest wanted one."""
    dist = torch.cdist(samples.double(), reals.double())  # (K, N)
    out = []
    for k, rows in enumerate(wanted):
        best = dist[k, list(rows)].min()
        out.append(int((dist[k] < best).sum()))
    return np.array(out)


def scores(rank: np.ndarray, carriers: list, n_real: int) -> dict:
    """Top-1 and top-5 rates with their Wilson intervals, and chance (``carriers``: m, the pictures each caption
    names)."""
    k = len(rank)
    top1, top5 = int((rank < 1).sum()), int((rank < 5).sum())
    m = np.array(carriers, dtype=float)
    return {
        "top1": top1 / k,
        "top1_interval": list(wilson(top1, k)),
        "top1_chance": float(np.mean(m / n_real)),
        "top5": top5 / k,
        "top5_interval": list(wilson(top5, k)),
        "top5_chance": float(np.mean(np.minimum(1.0, 5 * m / n_real))),
        "queries": k,
        "pictures": n_real,
    }


def evaluate(
    pipe, images, captions: list, *, queries: int = QUERIES, seed: int = 0, batch_size: int = 64, **sampling
) -> dict:
    """Sample one image for each of ``queries`` captions of real pictures (a fixed draw), and score their
    retrieval among all real pictures (``images``: indexable by a (B,) index → (B, 3, H, W) in [-1, 1])."""
    n = len(captions)
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(20_261_206))[: min(queries, n)].sort().values
    by_caption = {}
    for i, c in enumerate(captions):
        by_caption.setdefault(c, []).append(i)
    real = torch.cat([features(images.rows(torch.arange(i, min(i + 512, n)))) for i in range(0, n, 512)])
    prompts = [captions[i] for i in pick.tolist()]
    samples = pipe.generate(prompts, seed=seed, batch_size=batch_size, **sampling).float().cpu()
    rank = ranks(features(samples), real, [by_caption[p] for p in prompts])
    return {**scores(rank, [len(by_caption[p]) for p in prompts], n), "_images": samples, "_prompts": prompts}
