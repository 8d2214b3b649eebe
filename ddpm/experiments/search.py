"""Search spaces and random search: how a sweep spec says a constant varies, and the draws it makes.

A dimension is one constant of config.py and how it varies (a TOML table in a spec, see ``spec.py``)::

    log_uniform = [1e-4, 1e-2]        value = 10^u, u uniform in [log10 lo, log10 hi]; as many draws per decade
    one_minus_10_pow = [-4, -1.5]     value = 1 - 10^r, r uniform in [-4, -1.5] (EMA decay, Adam β: 0.9999 … 0.968)
    uniform = [0.0, 0.2]              value uniform in [lo, hi]
    int_uniform = [1, 3]              an int in lo..hi, each equally likely
    choice = [16, 32, 48]             one of the values; balanced: each appears equally often (±1) over the trials
    value = 0.1                       fixed for every trial

Random search rather than a grid (Bergstra & Bengio 2012, "Random Search for Hyper-Parameter Optimization"): with
a few trials, every trial tries a new value of each constant. Draws come from ``numpy.random.default_rng`` seeded
with the sweep's own seed, so the same spec draws the same trials on any machine, and a different seed different
ones. Drawn floats are rounded to 3 significant digits (of 10^r for ``one_minus_10_pow``), so that the values in
run names, tables and ADRs read as people write them; the rounding moves a draw by at most 0.05 %.
"""

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("log_uniform", "one_minus_10_pow", "uniform", "int_uniform", "choice", "value")


@dataclass(frozen=True)
class Dimension:
    """One varied constant: ``kind`` (one of ``KINDS``) and its ``arg`` (a [lo, hi] pair, a list, or a value)."""

    name: str
    kind: str
    arg: object

    def draw(self, rng: np.random.Generator, count: int) -> list:
        """``count`` values for ``count`` trials, in trial order."""
        if self.kind == "value":
            return [self.arg] * count
        if self.kind == "choice":
            order = []
            while len(order) < count:  # a fresh permutation per round: balanced, and still random
                order += [self.arg[i] for i in rng.permutation(len(self.arg))]
            return order[:count]
        lo, hi = self.arg
        if self.kind == "int_uniform":
            return [int(v) for v in rng.integers(lo, hi + 1, size=count)]
        if self.kind == "uniform":
            return [round_sig(float(v)) for v in rng.uniform(lo, hi, size=count)]
        if self.kind == "log_uniform":
            return [round_sig(10 ** float(u)) for u in rng.uniform(math.log10(lo), math.log10(hi), size=count)]
        return [round(1 - round_sig(10 ** float(r)), 12) for r in rng.uniform(lo, hi, size=count)]  # one_minus_10_pow

    @property
    def axis(self) -> str:
        """How a plot spaces this constant's values: "log", "log(1-x)" (for 1 - 10^r) or "linear"."""
        return {"log_uniform": "log", "one_minus_10_pow": "log(1-x)"}.get(self.kind, "linear")


def round_sig(x: float, digits: int = 3) -> float:
    """``x`` rounded to ``digits`` significant digits (0 stays 0)."""
    return 0.0 if x == 0 else float(f"{x:.{digits}g}")


def dimension(name: str, table: dict) -> Dimension:
    """A ``Dimension`` from a spec's ``[vary.NAME]`` table; ValueError naming the key for anything else."""
    kinds = [k for k in table if k in KINDS]
    unknown = [k for k in table if k not in KINDS]
    if unknown or len(kinds) != 1:
        raise ValueError(
            f"vary.{name}: expected exactly one of {', '.join(KINDS)}, got {', '.join(table) or 'nothing'}"
        )
    kind = kinds[0]
    arg = table[kind]
    if kind == "value":
        return Dimension(name, kind, config_value(arg))
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise ValueError(f"vary.{name}.choice: expected a non-empty list of values, got {arg!r}")
        return Dimension(name, kind, [config_value(v) for v in arg])
    if (
        not isinstance(arg, list)
        or len(arg) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in arg)
        or not arg[0] < arg[1]
    ):
        raise ValueError(f"vary.{name}.{kind}: expected [lo, hi] with lo < hi, got {arg!r}")
    if kind == "log_uniform" and arg[0] <= 0:
        raise ValueError(f"vary.{name}.log_uniform: the range must be above 0, got {arg!r}")
    if kind == "one_minus_10_pow" and arg[1] > 0:
        raise ValueError(f"vary.{name}.one_minus_10_pow: exponents must be ≤ 0 (1 - 10^r in [0, 1)), got {arg!r}")
    if kind == "int_uniform" and not all(isinstance(v, int) for v in arg):
        raise ValueError(f"vary.{name}.int_uniform: expected two ints, got {arg!r}")
    return Dimension(name, kind, list(arg))


def config_value(value):
    """TOML has no tuples: a list becomes a tuple, as config.py writes CHANNEL_MULTS = (1, 2, 2)."""
    return tuple(config_value(v) for v in value) if isinstance(value, list) else value


def draw_trials(dimensions: list, count: int, seed: int) -> list:
    """``count`` trials, each {NAME: value}, reproducible from ``seed``; the dimensions draw in the order given."""
    rng = np.random.default_rng(seed)
    columns = {d.name: d.draw(rng, count) for d in dimensions}
    return [{name: values[i] for name, values in columns.items()} for i in range(count)]
