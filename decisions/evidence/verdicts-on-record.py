"""The verdicts of ADR 0053's rule on the studies of ADRs 0032-0051, from the per-seed numbers those ADRs recorded.

Run from the repository root: .venv/bin/python decisions/evidence/verdicts-on-record.py

Their runs are gone, so the numbers are copied from the ADRs' tables (each line names the ADR and the table).
Probe readings are counts of 16 samples (0.31 is 5/16); where an ADR gave only min / median / max over 3 seeds,
those are the three values, compared unpaired (the seed order is not on record); where it gave a row per seed, the
seeds are paired. A point with one seed cannot be judged by any rule over seeds, and the tool says so.
"""

import os
import sys

sys.path.insert(0, os.getcwd())
from ddpm.measure.intervals import compare  # noqa: E402


def p(*readings):
    """Probe readings as printed (two decimals) back to the 16-sample counts they were."""
    return [round(r * 16) / 16 for r in readings]


# (ADR, what is compared, A's name, A's values, B's name, B's values, higher is better, paired)
STUDIES = [
    (
        "0032",
        "probe joint at step 1,500",
        "POOLED_TEXT",
        p(0.38, 0.31, 0.12),
        "control",
        p(0.25, 0.06, 0.06),
        True,
        True,
    ),
    (
        "0032",
        "probe shape at step 1,500",
        "POOLED_TEXT",
        p(0.50, 0.31, 0.25),
        "control",
        p(0.25, 0.06, 0.06),
        True,
        True,
    ),
    ("0033", "probe joint at step 1,500", "lr 2.18e-3", p(0.19), "lr 1e-3", p(0.06, 0.06, 0.25), True, False),
    (
        "0034",
        "probe joint at step 1,500",
        "SCALE_SHIFT + POOLED",
        p(0.25, 0.31, 0.50),
        "POOLED",
        p(0.12, 0.31, 0.38),
        True,
        False,
    ),
    (
        "0034",
        "probe joint at step 1,500",
        "SCALE_SHIFT + POOLED",
        p(0.25, 0.31, 0.50),
        "control",
        p(0.06, 0.06, 0.25),
        True,
        False,
    ),
    ("0036", "thousand images to colour 0.9", "batch 32", [16, 25.6, 41.6], "batch 64", [32, 35.2, 41.6], False, False),
    (
        "0036",
        "thousand images to background 0.9",
        "batch 32",
        [9.6, 9.6, 16],
        "batch 64",
        [12.8, 16, 22.4],
        False,
        False,
    ),
    ("0037", "probe joint at step 624", "width 32", p(0.0, 0.06, 0.06), "width 16", p(0.0, 0.0, 0.0), True, False),
    ("0037", "probe joint at step 624", "width 48", p(0.0, 0.06), "width 32", p(0.0, 0.06, 0.06), True, False),
    (
        "0038",
        "probe joint at step 1,500",
        "cosine 2e-3",
        p(0.62, 0.44, 0.25),
        "constant (0034)",
        p(0.25, 0.31, 0.50),
        True,
        False,
    ),
    (
        "0039",
        "probe joint at step 1,500",
        "beta2 0.99",
        p(0.75, 0.44, 0.44),
        "beta2 0.999",
        p(0.62, 0.44, 0.25),
        True,
        True,
    ),
    (
        "0040",
        "probe joint at step 1,500",
        "beta2 0.95",
        p(0.88, 0.81, 0.50),
        "beta2 0.99",
        p(0.75, 0.44, 0.44),
        True,
        True,
    ),
    ("0041", "probe joint at step 1,500", "beta2 0.9", p(0.75), "beta2 0.95", p(0.88, 0.81, 0.50), True, False),
    (
        "0042",
        "64-sample probe at 1,500",
        "EMA 0.98",
        [0.906, 0.844, 0.656],
        "EMA 0.995",
        [0.812, 0.734, 0.500],
        True,
        True,
    ),
    ("0042", "make eval seen joint", "EMA 0.98", [0.578, 0.552, 0.427], "EMA 0.995", [0.516, 0.443, 0.375], True, True),
    (
        "0042",
        "make eval held-out joint",
        "EMA 0.98",
        [0.427, 0.375, 0.323],
        "EMA 0.995",
        [0.344, 0.375, 0.302],
        True,
        True,
    ),
    ("0042", "make eval Fréchet distance", "EMA 0.98", [359, 312, 266], "EMA 0.995", [361, 368, 266], False, True),
    (
        "0043",
        "probe joint at 1,500 (seeds 0, 2)",
        "text 4e-3",
        p(0.88, 0.50),
        "EMA 0.98 arm",
        p(0.81, 0.56),
        True,
        True,
    ),
    ("0046", "make eval seen joint", "eta 0.5", [0.953, 0.984, 0.927], "eta 0", [0.948, 0.974, 0.922], True, True),
    ("0046", "make eval held-out joint", "eta 0.5", [0.948, 0.979, 0.781], "eta 0", [0.906, 0.927, 0.750], True, True),
    ("0046", "make eval Fréchet distance", "eta 0.5", [82.0, 44.2, 130.4], "eta 0", [95.4, 52.5, 145.3], False, True),
    (
        "0047",
        "steps to probe 0.9",
        "guidance 3, eta 0.5",
        [1800, 1700, 1900],
        "guidance 5, eta 0",
        [1700, 1800, 1900],
        False,
        True,
    ),
    (
        "0048",
        "make eval Fréchet distance",
        "guidance 3",
        [43.6, 28.5, 61.6, 45.0, 37.1, 39.0],
        "guidance 5",
        [82.0, 44.2, 130.4, 87.5, 66.7, 59.9],
        False,
        True,
    ),
    (
        "0048",
        "make eval seen joint",
        "guidance 3",
        [0.953, 0.974, 0.943, 0.964, 0.911, 0.865],
        "guidance 5",
        [0.953, 0.984, 0.927, 0.943, 0.943, 0.901],
        True,
        True,
    ),
    (
        "0049",
        "probe joint at 48,000 images",
        "batch 16",
        p(0.44, 0.25, 0.12),
        "batch 32",
        p(0.62, 0.69, 0.69),
        True,
        True,
    ),
    (
        "0050",
        "steps to probe 0.9",
        "width 24",
        [1900, 1700, 1800, 1700, 2100, 2100, 1800, 2000],
        "width 32",
        [1800, 1800, 1900, 1700, 1800, 1900],
        False,
        False,
    ),
    (
        "0050",
        "make eval seen joint",
        "width 24",
        [0.828, 0.979, 0.927, 0.948, 0.938, 0.917, 0.917, 0.938],
        "width 32",
        [0.953, 0.974, 0.943, 0.964, 0.911, 0.865],
        True,
        False,
    ),
    (
        "0050",
        "make eval held-out joint",
        "width 24",
        [0.708, 0.927, 0.927, 0.979, 0.958, 0.906, 0.906, 0.938],
        "width 32",
        [0.917, 0.969, 0.792, 0.948, 0.917, 0.948],
        True,
        False,
    ),
    (
        "0050",
        "make eval Fréchet distance",
        "width 24",
        [93.1, 26.9, 28.8, 35.6, 44.4, 31.3, 29.6, 33.3],
        "width 32",
        [43.6, 28.5, 61.6, 45.0, 37.1, 39.0],
        False,
        False,
    ),
    (
        "0051",
        "make eval seen joint",
        "width 16",
        [0.661, 0.625],
        "width 24",
        [0.828, 0.979, 0.927, 0.948, 0.938, 0.917, 0.917, 0.938],
        True,
        False,
    ),
]

if __name__ == "__main__":
    for adr, what, name_a, a, name_b, b, higher, paired in STUDIES:
        result = compare(a, b, higher_is_better=higher, paired=paired)
        print(f"ADR {adr}, {what}: {result.text((name_a, name_b))}")
