"""The measure's intervals and verdicts (issue 40): coverage on a known binomial, the bootstrap against a formula,
make compare's rule on constructed data (a real difference resolved, none not resolved, the seeds it would take),
and the rank correlation."""

import math

import numpy as np
import pytest

from ddpm.measure.intervals import bootstrap, compare, spearman, t975, wilson


@pytest.mark.parametrize("n, p", [(20, 0.5), (100, 0.9), (640, 0.93), (640, 0.99)])
def test_wilson_covers_a_known_binomial_95_percent_of_the_time(n, p):
    rng = np.random.default_rng(n)
    hits = rng.binomial(n, p, size=4000)
    covered = np.mean([lo <= p <= hi for lo, hi in (wilson(int(k), n) for k in hits)])
    assert 0.93 <= covered <= 0.975, covered


def test_wilson_at_640_samples_is_within_two_points_at_the_defaults_accuracy():
    lo, hi = wilson(round(0.93 * 640), 640)
    assert (hi - lo) / 2 <= 0.02  # make eval's default count of seen samples (issue 40's ±0.02)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0) and wilson(0, 0) == (0.0, 1.0)


def test_the_bootstrap_of_a_mean_agrees_with_the_normal_interval_and_respects_strata():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, 400)
    lo, hi = bootstrap(x, np.mean, reps=2000)
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    assert lo == pytest.approx(x.mean() - half, abs=0.05) and hi == pytest.approx(x.mean() + half, abs=0.05)
    groups = np.repeat([0, 1], 50)
    values = np.where(groups == 0, 0.0, 1.0)  # within each stratum the values do not vary
    assert bootstrap(values, np.mean, strata=groups) == (0.5, 0.5)


def test_t_quantiles_match_the_table_and_approach_the_normal():
    assert t975(1) == 12.706 and t975(10) == 2.228 and t975(30) == 2.042
    assert 2.0 < t975(60) < 2.01 and abs(t975(10_000) - 1.96) < 1e-3 and t975(0) == math.inf


def test_a_real_difference_is_resolved_and_none_is_not():
    better = compare([0.95, 0.93, 0.96, 0.94, 0.95], [0.90, 0.89, 0.91, 0.88, 0.90])  # paired: the same seeds
    assert better.verdict == "A better" and better.paired and better.lo > 0
    assert better.text(("width 24", "width 32")).startswith("width 24 better: width 24 − width 32 = +0.05")
    lower_is_better = compare([30.0, 31.0, 29.0], [40.0, 42.0, 41.0], higher_is_better=False)  # a distance
    assert lower_is_better.verdict == "A better"
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.9, 0.05, 5), rng.normal(0.9, 0.05, 5)
    same = compare(list(a), list(b), paired=False)
    assert same.verdict == "not resolved" and same.lo < 0 < same.hi


def test_not_resolved_names_the_seeds_that_would_resolve_it():
    # a difference of 0.02 with paired differences of sd 0.05: t·0.05/√n < 0.02 first holds at n = 27
    diffs = np.array([0.02 + 0.05 * z for z in (-1.2, 0.3, 1.1, -0.4, 0.2)])
    diffs = 0.02 + (diffs - diffs.mean()) / diffs.std(ddof=1) * 0.05  # exactly mean 0.02, sd 0.05
    c = compare(list(diffs), [0.0] * 5)
    assert c.verdict == "not resolved" and c.seeds_needed == 27
    assert "about 27 seeds would resolve a difference of this size" in c.text()
    assert compare([1.0, 2.0], [1.0, 2.0]).seeds_needed is None  # no difference at all


def test_one_seed_on_a_side_is_not_judged_and_says_why():
    one = compare([0.19], [0.06, 0.06, 0.25])  # ADR 0033's single-seed trial against a 3-seed control
    assert one.verdict == "not resolved" and one.seeds_needed is None
    assert one.text(("lr 2e-3", "lr 1e-3")).endswith(
        "over 1 and 3 seeds: a verdict needs at least 2 seeds on each side"
    )


def test_spearman_of_an_order_and_its_reverse():
    rho, lo, hi = spearman([1, 2, 3, 4, 5, 6], [10, 20, 30, 40, 50, 60])
    assert rho == 1.0 and hi == 1.0
    assert spearman([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1])[0] == -1.0
    rho, lo, hi = spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert rho == pytest.approx(0.8) and lo < rho <= hi
