"""Intervals and verdicts: how sure a figure is, and whether two points differ by more than their seeds do.

- ``wilson(k, n)``: the Wilson score interval of a binomial proportion (Wilson 1927), for an accuracy over n
  samples: it keeps its coverage near 95 % where the normal one does not (p near 0 or 1, small n; Brown, Cai and
  DasGupta 2001).
- ``bootstrap(values, statistic, strata=...)``: the percentile bootstrap (Efron & Tibshirani 1993) for the means no
  formula covers (the prompted attributes' probability, diversity), resampling within each prompt so that every
  prompt keeps its count of samples; ``jackknife(values, statistic, groups=...)`` for the Fréchet distance, which
  a bootstrap biases upwards (a resample's duplicated rows); a prompt is left out of both sides.
- ``compare(a, b)``: the difference of two points' per-seed values with its t interval (paired where the seeds
  match, Welch's otherwise), and a verdict: "A better", "B better", or "not resolved: about N seeds would resolve a
  difference of this size". ``make compare``, the sweep's and the ladder's results use it, so ADR verdicts come
  from one rule.
- ``spearman(x, y)``: the rank correlation of two measurements of the same runs, with a bootstrap interval over runs.

Pure Python and numpy; nothing of the repo.
"""

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5 % point
# Student's t, 97.5 % point, for 1..30 degrees of freedom; beyond, Hill's (1970) expansion around the normal.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t975(df: float) -> float:
    """Student's t 97.5 % quantile for ``df`` degrees of freedom (two-sided 95 %)."""
    if df < 1:
        return math.inf
    if df <= 30 and float(df).is_integer():
        return _T975[int(df) - 1]
    z, v = Z95, float(df)
    return z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)


def wilson(k: int, n: int, z: float = Z95) -> tuple:
    """(lo, hi) of the Wilson score interval for k successes in n trials; (0, 1) when n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap(
    values,
    statistic: Callable,
    *,
    strata: Optional[Sequence] = None,
    reps: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple:
    """(lo, hi) percentile interval of ``statistic(values[idx])`` over resamples of the rows of ``values`` (arrays of
    k values each where the statistic gives k figures at once); with ``strata`` (one label a row), rows are
    resampled within each stratum."""
    values = np.asarray(values)
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    groups = (
        [np.arange(n)] if strata is None else [np.flatnonzero(np.asarray(strata) == s) for s in dict.fromkeys(strata)]
    )
    stats = []
    for _ in range(reps):
        idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        stats.append(statistic(values[idx]))
    stats = np.asarray(stats, dtype=float)  # (reps,) or (reps, k) for a statistic of k figures
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(stats, tail, axis=0), np.nanpercentile(stats, 100 - tail, axis=0)
    return (float(lo), float(hi)) if stats.ndim == 1 else (lo, hi)


def jackknife(labels: Sequence, statistic: Callable, *, z: float = Z95) -> tuple:
    """(lo, hi) = θ ± z·se with the delete-one-group jackknife's standard error (Efron & Stein 1981), for a smooth
    statistic that the bootstrap biases, such as a Fréchet distance (a resample's duplicated rows shrink its
    covariance). ``statistic(without)`` is the figure computed with the group ``without`` left out (None: all)."""
    labels = list(dict.fromkeys(labels))
    g = len(labels)
    if g < 2:
        return (math.nan, math.nan)
    theta = statistic(None)
    leave_out = np.array([statistic(label) for label in labels], dtype=float)
    se = math.sqrt((g - 1) / g * float(((leave_out - leave_out.mean()) ** 2).sum()))
    return theta - z * se, theta + z * se


@dataclass
class Comparison:
    """``difference`` = mean(A) − mean(B), its 95 % interval, and the verdict in words."""

    difference: float
    lo: float
    hi: float
    n_a: int
    n_b: int
    paired: bool
    verdict: str  # "A better", "B better" or "not resolved"
    seeds_needed: Optional[int] = None  # where not resolved: seeds per point that would resolve this difference

    def text(self, names=("A", "B"), fmt: Callable = "{:+.3g}".format) -> str:
        if not math.isfinite(self.difference):
            return f"not resolved: {names[0]} against {names[1]}: fewer than 2 seeds with a value on each"
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return (
                f"not resolved: {names[0]} − {names[1]} = {fmt(self.difference)} over {self.n_a} and {self.n_b} "
                "seeds: a verdict needs at least 2 seeds on each side"
            )
        span = f"{fmt(self.difference)} ({fmt(self.lo)} to {fmt(self.hi)})"
        how = "paired over" if self.paired else "over"
        seeds = f"{self.n_a}" if self.paired else f"{self.n_a} and {self.n_b}"
        if self.verdict == "not resolved":
            more = (
                f"; about {self.seeds_needed} seeds would resolve a difference of this size"
                if self.seeds_needed
                else "; no difference seen"
            )
            return f"not resolved: {names[0]} − {names[1]} = {span}, {how} {seeds} seeds{more}"
        winner = names[0] if self.verdict == "A better" else names[1]
        return f"{winner} better: {names[0]} − {names[1]} = {span}, {how} {seeds} seeds"


def compare(
    a: Sequence[float], b: Sequence[float], *, higher_is_better: bool = True, paired: Optional[bool] = None
) -> Comparison:
    """A against B from their per-seed values (None: a seed without a value, left out). ``paired``: the i-th
    values of A and B share a seed (default: when they have the same length); a paired difference removes the
    seeds' own spread, which is usually most of it."""
    pairs = list(zip(a, b)) if paired or (paired is None and len(a) == len(b)) else None
    if pairs is not None:
        d = np.array([x - y for x, y in pairs if x is not None and y is not None], dtype=float)
        n = len(d)
        mean, sd = (float(d.mean()), float(d.std(ddof=1))) if n > 1 else (float(d.mean()) if n else math.nan, math.nan)
        half = t975(n - 1) * sd / math.sqrt(n) if n > 1 else math.inf
        n_a = n_b = n
        need = _seeds_needed(mean, sd, lambda k: t975(k - 1) / math.sqrt(k))
    else:
        xa = np.array([x for x in a if x is not None], dtype=float)
        xb = np.array([x for x in b if x is not None], dtype=float)
        n_a, n_b = len(xa), len(xb)
        mean = float(xa.mean() - xb.mean()) if n_a and n_b else math.nan
        va = xa.var(ddof=1) / n_a if n_a > 1 else math.inf
        vb = xb.var(ddof=1) / n_b if n_b > 1 else math.inf
        se = math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1)) if math.isfinite(se) and se > 0 else 1
        half = t975(df) * se if math.isfinite(se) else math.inf
        sd = math.sqrt((xa.var(ddof=1) + xb.var(ddof=1)) / 2) if n_a > 1 and n_b > 1 else math.nan
        need = _seeds_needed(mean, sd, lambda k: t975(2 * k - 2) * math.sqrt(2 / k))
    lo, hi = mean - half, mean + half
    if lo > 0 or hi < 0:
        a_wins = (lo > 0) == higher_is_better
        return Comparison(mean, lo, hi, n_a, n_b, pairs is not None, "A better" if a_wins else "B better")
    return Comparison(mean, lo, hi, n_a, n_b, pairs is not None, "not resolved", need)


def _seeds_needed(diff: float, sd: float, half_per_sd: Callable) -> Optional[int]:
    """The fewest seeds per point whose interval half-width, at this spread, is below |diff| (capped at 1,000);
    None where there is no difference to resolve or no spread to go by."""
    if not (math.isfinite(diff) and math.isfinite(sd)) or diff == 0:
        return None
    for k in range(2, 1001):
        if half_per_sd(k) * sd < abs(diff):
            return k
    return 1000


def _ranks(x) -> np.ndarray:
    """Ranks 1..n, ties given their mean rank."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float], *, reps: int = 2000, seed: int = 0) -> tuple:
    """(ρ, lo, hi): Spearman's rank correlation of paired measurements and its bootstrap interval over the pairs."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    def rho(rows):
        rx, ry = _ranks(rows[:, 0]), _ranks(rows[:, 1])
        if rx.std() == 0 or ry.std() == 0:
            return math.nan
        return float(np.corrcoef(rx, ry)[0, 1])

    pairs = np.stack([x, y], axis=1)
    lo, hi = bootstrap(pairs, rho, reps=reps, seed=seed)
    return rho(pairs), lo, hi
