"""Sweep and ladder spec files (TOML, read with the standard library's ``tomllib``), validated with one-line errors.

A sweep (``decisions/sweeps/*.toml``, ``make sweep SPEC=...``)::

    name = "lr"                   # runs/<name>/ (default: the file's stem)
    seed = 0                      # the sweep's own seed: which trials are drawn (search.py)
    trials = 8                    # points drawn
    seeds = 2                     # training seeds per point: SEED = 0, 1 (or a list: [0, 7])
    budget_steps = 600            # optimizer steps per trial (or budget_fraction = 0.2 of the default run, or
                                  # budget_tflop = 88: the steps at which 3 × forward FLOPs × images reaches it)
    metric = "steps_to_target"    # what ranks the points (metrics.METRICS); direction = "min" or "max" overrides
    target_accuracy = 0.9         # joint probe accuracy for steps_to_target
    [base]                        # --set for every trial
    EVAL_EVERY_STEPS = 100
    [vary.LEARNING_RATE]          # search.py: log_uniform, one_minus_10_pow, uniform, int_uniform, choice, value
    log_uniform = [3e-4, 3e-3]

A ladder (``decisions/ladders/*.toml``, ``make ladder SPEC=...``) has the same keys except ``seed``, ``trials``
and ``vary``; instead two or more rungs, smallest first, each a table of constants::

    [[rung]]
    BASE_CHANNELS = 16
    [[rung]]
    BASE_CHANNELS = 32
"""

import os
import tomllib
from dataclasses import dataclass, field

from ddpm.experiments.metrics import METRICS
from ddpm.experiments.search import config_value, dimension
from ddpm.run.settings import SCHEMA

BUDGETS = ("budget_steps", "budget_fraction", "budget_tflop")
COMMON = ("name", "seeds", *BUDGETS, "metric", "direction", "target_accuracy", "base")
SWEEP_KEYS = COMMON + ("seed", "trials", "vary")
LADDER_KEYS = COMMON + ("rung",)


class SpecError(ValueError):
    """A spec that cannot be run; the message is one line naming the file and the key."""


@dataclass
class Spec:
    path: str
    name: str
    seeds: list
    budget_steps: int = None  # None: budget_fraction of the default run (resolved against config.py by the runner)
    budget_fraction: float = None
    budget_tflop: float = None  # compute-matched: each point trains as many steps as its model and batch allow
    metric: str = "final_loss"
    direction: str = "min"
    target_accuracy: float = 0.9
    base: dict = field(default_factory=dict)
    seed: int = 0
    trials: int = 0
    vary: list = field(default_factory=list)  # [Dimension]
    rungs: list = field(default_factory=list)  # [{NAME: value}]


def load(path: str, *, ladder: bool = False) -> Spec:
    """The spec at ``path``; ``SpecError`` (one line: file, key, what is allowed) for anything wrong in it."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as err:
        raise SpecError(f"{path}: cannot read it ({err.strerror or err})") from err
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML: {err}") from err
    try:
        return _parse(raw, path, ladder)
    except ValueError as err:
        raise SpecError(f"{path}: {err}") from err


def _parse(raw: dict, path: str, ladder: bool) -> Spec:
    allowed = LADDER_KEYS if ladder else SWEEP_KEYS
    for key in raw:
        if key not in allowed:
            raise ValueError(
                f"unknown key {key!r} (a {'ladder' if ladder else 'sweep'} spec takes {', '.join(allowed)})"
            )
    name = raw.get("name", os.path.splitext(os.path.basename(path))[0])
    if not isinstance(name, str) or not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"name = {name!r}: expected letters, digits, - or _ (it names runs/<name>/)")
    seeds = raw.get("seeds", 1)
    seeds = list(range(seeds)) if _is_int(seeds) and seeds >= 1 else seeds
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(_is_int(s) and s >= 0 for s in seeds)
        or len(set(seeds)) < len(seeds)
    ):
        raise ValueError(f"seeds = {raw.get('seeds')!r}: expected a count ≥ 1 or a list of distinct ints ≥ 0")
    spec = Spec(path=path, name=name, seeds=seeds)
    if sum(key in raw for key in BUDGETS) != 1:
        raise ValueError(
            "give exactly one of budget_steps (optimizer steps per trial), budget_fraction (of the default "
            "run) or budget_tflop (training compute per trial, 3 × forward FLOPs × images)"
        )
    if "budget_steps" in raw:
        spec.budget_steps = _positive_int(raw, "budget_steps")
    elif "budget_fraction" in raw:
        spec.budget_fraction = raw["budget_fraction"]
        if not _is_number(spec.budget_fraction) or not 0 < spec.budget_fraction <= 1:
            raise ValueError(f"budget_fraction = {spec.budget_fraction!r}: expected a number in (0, 1]")
    else:
        spec.budget_tflop = raw["budget_tflop"]
        if not _is_number(spec.budget_tflop) or not 0 < spec.budget_tflop < float("inf"):
            raise ValueError(f"budget_tflop = {spec.budget_tflop!r}: expected a number > 0 (TFLOP of training compute)")
    spec.metric = raw.get("metric", "final_loss")
    if spec.metric not in METRICS:
        raise ValueError(f"metric = {spec.metric!r}: expected one of {', '.join(METRICS)}")
    spec.direction = raw.get("direction", METRICS[spec.metric])
    if spec.direction not in ("min", "max"):
        raise ValueError(f'direction = {spec.direction!r}: expected "min" or "max"')
    spec.target_accuracy = raw.get("target_accuracy", 0.9)
    if not isinstance(spec.target_accuracy, (int, float)) or not 0 < spec.target_accuracy <= 1:
        raise ValueError(f"target_accuracy = {spec.target_accuracy!r}: expected a number in (0, 1]")
    spec.base = _constants(raw.get("base", {}), "base")
    if ladder:
        rungs = raw.get("rung", [])
        if not isinstance(rungs, list) or len(rungs) < 2:
            raise ValueError("a ladder needs two or more [[rung]] tables, smallest first")
        spec.rungs = [_constants(r, f"rung[{i}]") for i, r in enumerate(rungs)]
        return spec
    spec.seed = raw.get("seed", 0)
    if not _is_int(spec.seed) or spec.seed < 0:
        raise ValueError(f"seed = {spec.seed!r}: expected an int ≥ 0 (the sweep's own seed)")
    spec.trials = _positive_int(raw, "trials")
    vary = raw.get("vary")
    if not isinstance(vary, dict) or not vary:
        raise ValueError(
            "vary: expected at least one [vary.NAME] table (e.g. [vary.LEARNING_RATE] log_uniform = [3e-4, 3e-3])"
        )
    for key, table in vary.items():
        _check_name(key, f"vary.{key}")
        if not isinstance(table, dict):
            raise ValueError(f"vary.{key}: expected a table, e.g. [vary.{key}] log_uniform = [1e-4, 1e-2]")
        if key in spec.base:
            raise ValueError(f"vary.{key}: also set in [base]; a constant is either varied or fixed")
    spec.vary = [dimension(key, table) for key, table in vary.items()]
    if "SEED" in vary:
        raise ValueError("vary.SEED: the training seed is set by `seeds`, not varied")
    return spec


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _positive_int(raw: dict, key: str) -> int:
    value = raw.get(key)
    if not _is_int(value) or value < 1:
        raise ValueError(f"{key} = {value!r}: expected an int ≥ 1")
    return value


def _check_name(key: str, where: str) -> None:
    if key not in SCHEMA:
        raise ValueError(f"{where}: {key} is not a constant of config.py")


def _constants(table, where: str) -> dict:
    if not isinstance(table, dict):
        raise ValueError(f"{where}: expected a table of constants (NAME = value)")
    for key in table:
        _check_name(key, f"{where}.{key}")
    if "SEED" in table:
        raise ValueError(f"{where}.SEED: the training seed is set by `seeds`")
    return {k: config_value(v) for k, v in table.items()}
