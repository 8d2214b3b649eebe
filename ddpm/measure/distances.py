"""Distances between sets of image features: the Fréchet distance of two Gaussians fitted to them (Heusel et al.
2017's FID formula, here in the probe's feature space) and the diversity of the samples drawn for one prompt.
Both take (N, F) features; neither imports anything of the repo.
"""

from typing import Optional

import numpy as np
import torch


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a, b) -> float:
    """‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2(Σ_a^½ Σ_b Σ_a^½)^½) of two feature sets (N, F), float64.

    tr((Σ_a Σ_b)^½) is computed as tr((Σ_a^½ Σ_b Σ_a^½)^½), a symmetric PSD matrix, by eigendecomposition,
    which stays real and stable when the covariances are singular (fewer samples than features).
    """
    a = np.asarray(torch.as_tensor(a).double().cpu().numpy())
    b = np.asarray(torch.as_tensor(b).double().cpu().numpy())
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Fréchet distance needs at least 2 samples per set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrtm_psd(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    fd = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
    return max(fd, 0.0)


def diversity(features: torch.Tensor, n: int) -> Optional[float]:
    """Mean pairwise L2 distance among the n feature rows of each prompt (consecutive), averaged over prompts."""
    if n < 2:
        return None
    f = features.reshape(-1, n, features.shape[-1]).double()
    d = torch.cdist(f, f)  # (P, n, n)
    return (d.sum(dim=(1, 2)) / (n * (n - 1))).mean().item()
