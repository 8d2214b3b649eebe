"""Validation of the training constants, and ``--set KEY=VALUE`` overrides.

The entry points read ``config.py`` once into a plain dict and call ``validate``; nothing under ``ddpm/``
imports ``config``. Each rule names the key, the value and what is allowed, so a typo stops the run at
start-up rather than an hour in.
"""

import ast
import difflib
import math
import re

from ddpm.data.folder import SPLITS as FOLDER_SPLITS
from ddpm.data.images import RESIZE_POLICIES
from ddpm.data.load import BAD_FILE_POLICIES, DATASETS, FLIP_POLICIES
from ddpm.data.shapes import SPLITS
from ddpm.model.diffusion import OBJECTIVES, PREDICTIONS, SAMPLERS, SCHEDULES, max_sampling_steps, samplers_for
from ddpm.model.text import ENCODER_KINDS
from ddpm.model.timesteps import DENSITIES
from ddpm.model.unet import NORMS
from ddpm.run.finetune import UNET_PARTS, parse_parts
from ddpm.run.optim import LR_SCHEDULES, OPTIMIZERS
from ddpm.run.sampling import PRECISIONS, SEED_MAX, Sampling


def _int(lo=None, hi=None):
    def check(v):
        return (lo is None or v >= lo) and (hi is None or v <= hi)

    text = f"an int in [{lo}, {'∞' if hi is None else '2**64 - 1' if hi == SEED_MAX else hi}]"
    return int, check, text


def _float(lo, hi, *, lo_open=False, hi_open=False):
    def check(v):
        return math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    text = f"a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    return (int, float), check, text


def _choice(options):
    return str, lambda v: v in options, "one of " + ", ".join(repr(o) for o in options)


def _int_tuple(*, lo, allow_empty):
    def check(v):
        return (allow_empty or len(v) > 0) and all(type(x) is int and x >= lo for x in v)

    return tuple, check, f"a tuple of ints ≥ {lo}" + ("" if allow_empty else ", not empty")


def _parts_ok(value) -> bool:
    try:
        parse_parts(value)
    except ValueError:
        return False
    return True


_BOOL = (bool, lambda v: True, "True or False")
_STR = (str, lambda v: True, "a string")

SCHEMA = {
    "DATASET": _choice(DATASETS),
    "DATA_DIR": _STR,
    "DATASET_SIZE": _int(1),
    "DATASET_SEED": _int(0, SEED_MAX),
    "DATASET_SPLIT": _choice(SPLITS + tuple(FOLDER_SPLITS)[1:]),
    "CAPTION_COLUMN": (str, lambda v: bool(v.strip()), "a column name, not empty"),
    "IMAGE_SIZE": _int(8, 256),
    "RESIZE": _choice(RESIZE_POLICIES),
    "BACKGROUND": (
        tuple,
        lambda v: len(v) == 3 and all(type(x) is int and 0 <= x <= 255 for x in v),
        "a tuple of 3 ints in [0, 255]",
    ),
    "FLIP": _choice(FLIP_POLICIES),
    "BAD_FILES": _choice(BAD_FILE_POLICIES),
    "CIFAR10_CAPTION": (str, lambda v: v.count("{}") == 1, 'a string with one "{}" for the class'),
    "TIMESTEPS": _int(2, 10000),
    "BETA_SCHEDULE": _choice(SCHEDULES),
    "BETA_START": _float(0, 1, lo_open=True, hi_open=True),
    "BETA_END": _float(0, 1, lo_open=True, hi_open=True),
    "PREDICTION": _choice(PREDICTIONS),
    "OBJECTIVE": _choice(OBJECTIVES),
    "TIMESTEP_DENSITY": _choice(DENSITIES),
    "DENSITY_LOC": _float(-10, 10),
    "DENSITY_SCALE": _float(0, 10, lo_open=True),
    "SIGMA_DATA": _float(0, 10, lo_open=True),
    "OFFSET_NOISE": _float(0, 1),
    "BASE_CHANNELS": _int(1),
    "CHANNEL_MULTS": _int_tuple(lo=1, allow_empty=False),
    "NUM_RES_BLOCKS": _int(1),
    "ATTENTION_RESOLUTIONS": _int_tuple(lo=1, allow_empty=True),
    "ATTENTION_HEADS": _int(1),
    "TIME_EMB_DIM": _int(2),
    "NORM_GROUPS": _int(1),
    "NORM": _choice(NORMS),
    "LINEAR_BIAS": _BOOL,
    "POOLED_TEXT": _BOOL,
    "SCALE_SHIFT": _BOOL,
    "DROPOUT": _float(0, 1, hi_open=True),
    "TEXT_ENCODER": _choice(ENCODER_KINDS),
    "TEXT_CONTEXT_LENGTH": _int(2),
    "TEXT_WIDTH": _int(1),
    "TEXT_HEADS": _int(1),
    "TEXT_LAYERS": _int(1),
    "OPEN_CLIP_MODEL": _STR,
    "OPEN_CLIP_PRETRAINED": _STR,
    "TRAIN_TEXT_TOWER": _BOOL,
    "TEXT_CACHE_MB": _int(0),
    "CAPTION_DROPOUT": _float(0, 1, hi_open=True),
    "MIN_SNR_GAMMA": _float(0, 1e6),
    "GUIDANCE_SCALE": _float(0, 100),
    "SAMPLER": _choice(SAMPLERS),
    "NUM_INFERENCE_STEPS": _int(1),
    "DDIM_ETA": _float(0, 1),
    "CLIP_DENOISED": _BOOL,
    "LEARNING_RATE": _float(0, 1, lo_open=True),
    "WARMUP_STEPS": _int(0),
    "WEIGHT_DECAY": _float(0, 1),
    "OPTIMIZER": _choice(OPTIMIZERS),
    "ADAM_BETAS": (
        (tuple, list),
        lambda v: len(v) == 2 and all(type(b) in (int, float) and 0 <= b < 1 for b in v),
        "a pair (β1, β2) of numbers in [0, 1)",
    ),
    "ADAM_EPS": _float(0, 1, lo_open=True),
    "LR_SCHEDULE": _choice(LR_SCHEDULES),
    "LR_MIN_RATIO": _float(0, 1),
    "TEXT_LEARNING_RATE": _float(0, 1),
    "GRAD_ACCUM_STEPS": _int(1),
    "BATCH_SIZE": _int(1),
    "EPOCHS": _int(1),
    "TRAIN_STEPS": _int(0),
    "GRAD_CLIP": _float(0, 1e6, lo_open=True),
    "EMA_DECAY": _float(0, 1, hi_open=True),
    "SEED": _int(0, SEED_MAX),
    "TRAIN_UNET_PARTS": (str, _parts_ok, "'all' or a comma-separated list of " + ", ".join(UNET_PARTS[1:])),
    "PRECISION": _choice(PRECISIONS),
    "CHANNELS_LAST": _BOOL,
    "COMPILE": _BOOL,
    "GENERATE_SAMPLES_EVERY": _int(1),
    "CHECKPOINT_EVERY": _int(1),
    "SAMPLE_GRID_SIZE": _int(1, 256),
    "KEEP_CHECKPOINTS": _int(1),
    "EVAL_EVERY": _int(0),
    "EVAL_EVERY_STEPS": _int(0),
    "PROBE_GUIDANCE_SCALE": _float(0, 100),
    "PROBE_DDIM_ETA": _float(0, 1),
    "PROBE_NUM_STEPS": _int(1),
}


def _type_ok(value, types) -> bool:
    if isinstance(value, bool):  # bool is a subclass of int; True is not a batch size
        return types is bool
    return isinstance(value, types)


def validate(cfg: dict, *, origin: dict = None) -> dict:
    """Check every key of ``cfg`` against SCHEMA and the rules that tie keys together; return ``cfg``.

    Raises ValueError listing every problem, each naming the key, the value and what is allowed, and where the
    value came from when ``origin`` (KEY → "set by ADR 0007", say) knows it.
    """
    errors = [
        f"{k}: missing from config.py, or not a literal there (expected {SCHEMA[k][2]})" for k in SCHEMA if k not in cfg
    ]
    errors += [f"{k}: {unknown(k)}" for k in cfg if k not in SCHEMA]
    for key, value in cfg.items():
        if key not in SCHEMA:
            continue
        types, check, allowed = SCHEMA[key]
        if not _type_ok(value, types) or not check(value):
            errors.append(f"{key} = {value!r} ({type(value).__name__}): expected {allowed}")
    if not errors:
        errors += _cross_checks(cfg)
    if errors:
        origin = origin or {}
        errors = [f"{e} ({origin[k]})" if (k := re.split(r"[ :=]", e, maxsplit=1)[0]) in origin else e for e in errors]
        raise ValueError("invalid configuration:\n  " + "\n  ".join(errors))
    return cfg


def _cross_checks(c: dict) -> list:
    errors = []
    levels = len(c["CHANNEL_MULTS"])
    if c["IMAGE_SIZE"] % 2 ** (levels - 1):
        errors.append(
            f"IMAGE_SIZE = {c['IMAGE_SIZE']}: must be divisible by 2^{levels - 1} for {levels} CHANNEL_MULTS levels"
        )
    resolutions = [c["IMAGE_SIZE"] // 2**i for i in range(levels)]
    for r in c["ATTENTION_RESOLUTIONS"]:
        if r not in resolutions:
            errors.append(f"ATTENTION_RESOLUTIONS contains {r}: the UNet's resolutions are {resolutions}")
    for mult in c["CHANNEL_MULTS"]:
        ch = c["BASE_CHANNELS"] * mult
        if ch % c["NORM_GROUPS"] or ch % c["ATTENTION_HEADS"]:
            errors.append(
                f"BASE_CHANNELS × {mult} = {ch}: must be divisible by NORM_GROUPS = {c['NORM_GROUPS']} "
                f"and ATTENTION_HEADS = {c['ATTENTION_HEADS']}"
            )
    if c["TIME_EMB_DIM"] % 2:
        errors.append(f"TIME_EMB_DIM = {c['TIME_EMB_DIM']}: must be even (cos and sin halves)")
    if c["TEXT_WIDTH"] % c["TEXT_HEADS"]:
        errors.append(f"TEXT_WIDTH = {c['TEXT_WIDTH']}: must be divisible by TEXT_HEADS = {c['TEXT_HEADS']}")
    most = max_sampling_steps(c["SAMPLER"], c["TIMESTEPS"])
    if c["NUM_INFERENCE_STEPS"] > most:
        errors.append(
            f"NUM_INFERENCE_STEPS = {c['NUM_INFERENCE_STEPS']}: must be ≤ {most} (TIMESTEPS = {c['TIMESTEPS']}"
            + (" less one for the DPM-Solver++ samplers)" if most < c["TIMESTEPS"] else ")")
        )
    if c["OBJECTIVE"] != "flow" and c["PROBE_NUM_STEPS"] > c["TIMESTEPS"]:
        errors.append(
            f"PROBE_NUM_STEPS = {c['PROBE_NUM_STEPS']}: the probe's DDIM takes ≤ TIMESTEPS = {c['TIMESTEPS']}"
        )
    if c["BETA_SCHEDULE"] == "linear" and c["BETA_START"] >= c["BETA_END"]:
        errors.append(f"BETA_START = {c['BETA_START']}: must be below BETA_END = {c['BETA_END']}")
    if c["TEXT_ENCODER"] == "open_clip" and not c["OPEN_CLIP_PRETRAINED"]:
        errors.append("OPEN_CLIP_PRETRAINED is empty: the open_clip encoder needs a pretrained tag or a weights file")
    if c["DATASET"] != "shapes" and not c["DATA_DIR"]:
        errors.append(
            f"DATA_DIR is empty: DATASET = {c['DATASET']!r} reads its images from a folder (--set DATA_DIR=/path)"
        )
    fits = samplers_for(c["OBJECTIVE"])
    if c["SAMPLER"] not in fits:
        errors.append(
            f"SAMPLER = {c['SAMPLER']!r}: OBJECTIVE = {c['OBJECTIVE']!r} samples with {', '.join(map(repr, fits))}"
        )
    if c["PREDICTION"] == "edm" and c["MIN_SNR_GAMMA"]:
        errors.append(
            f"MIN_SNR_GAMMA = {c['MIN_SNR_GAMMA']}: PREDICTION = 'edm' weighs its own loss; set MIN_SNR_GAMMA=0"
        )
    allowed = {"shapes": SPLITS, "folder": tuple(FOLDER_SPLITS), "cifar10": ("train",)}[c["DATASET"]]
    if c["DATASET_SPLIT"] not in allowed:
        errors.append(
            f"DATASET_SPLIT = {c['DATASET_SPLIT']!r}: DATASET = {c['DATASET']!r} has the splits "
            f"{', '.join(map(repr, allowed))}"
        )
    if c["BATCH_SIZE"] % c["GRAD_ACCUM_STEPS"]:
        errors.append(
            f"GRAD_ACCUM_STEPS = {c['GRAD_ACCUM_STEPS']}: must divide BATCH_SIZE = {c['BATCH_SIZE']} "
            "(each micro-batch is BATCH_SIZE / GRAD_ACCUM_STEPS images)"
        )
    if c["DATASET"] == "shapes" and c["BATCH_SIZE"] > c["DATASET_SIZE"]:
        errors.append(f"BATCH_SIZE = {c['BATCH_SIZE']}: must be ≤ DATASET_SIZE = {c['DATASET_SIZE']}")
    return errors


def unknown(key: str) -> str:
    """ "unknown key; did you mean LEARNING_RATE?" with the nearest known names, or where to find them all."""
    near = difflib.get_close_matches(key.upper(), SCHEMA, n=3, cutoff=0.6)
    return "unknown key; " + (f"did you mean {' or '.join(near)}?" if near else "config.py lists the known keys")


def parse_overrides(items: list) -> dict:
    """["KEY=VALUE", ...] → {KEY: value}. VALUE is a Python literal; a bare word is taken as a string."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set LEARNING_RATE=2e-4")
        if key not in SCHEMA:
            raise ValueError(f"--set {key}: {unknown(key)}")
        try:
            out[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            out[key] = text.strip()
    return out


def config_from_module(module) -> dict:
    """The UPPER_CASE names of an imported config module, as a plain dict."""
    return {k: getattr(module, k) for k in dir(module) if k.isupper() and not k.startswith("_")}


# ---- config values → constructor arguments (the only place that maps one to the other) ------------------
# constructor argument → the config key it comes from, per component; read both ways (``config_name``)
CONFIG_NAMES = {
    "unet_args": {
        "image_size": "IMAGE_SIZE",
        "base_channels": "BASE_CHANNELS",
        "channel_mults": "CHANNEL_MULTS",
        "num_res_blocks": "NUM_RES_BLOCKS",
        "attention_resolutions": "ATTENTION_RESOLUTIONS",
        "time_emb_dim": "TIME_EMB_DIM",
        "attention_heads": "ATTENTION_HEADS",
        "norm_groups": "NORM_GROUPS",
        "dropout": "DROPOUT",
        "linear_bias": "LINEAR_BIAS",
        "norm": "NORM",
        "pooled_text": "POOLED_TEXT",
        "scale_shift": "SCALE_SHIFT",
    },
    "text_args": {
        "kind": "TEXT_ENCODER",
        "context_length": "TEXT_CONTEXT_LENGTH",
        "width": "TEXT_WIDTH",
        "heads": "TEXT_HEADS",
        "layers": "TEXT_LAYERS",
        "open_clip_model": "OPEN_CLIP_MODEL",
        "open_clip_pretrained": "OPEN_CLIP_PRETRAINED",
        "train_tower": "TRAIN_TEXT_TOWER",
    },
    "diffusion_args": {
        "timesteps": "TIMESTEPS",
        "schedule": "BETA_SCHEDULE",
        "beta_start": "BETA_START",
        "beta_end": "BETA_END",
        "prediction": "PREDICTION",
        "objective": "OBJECTIVE",
        "sigma_data": "SIGMA_DATA",
    },
}


def config_name(group: str, arg: str) -> str:
    """``("unet_args", "norm")`` → ``"NORM"``: the config key a constructor argument comes from (else group.arg)."""
    return CONFIG_NAMES.get(group, {}).get(arg, f"{group}.{arg}")


def _args(group: str, cfg: dict) -> dict:
    return {
        arg: tuple(cfg[name]) if isinstance(cfg[name], list) else cfg[name] for arg, name in CONFIG_NAMES[group].items()
    }


def text_args(cfg: dict) -> dict:
    """``build_text_encoder`` arguments; train.py adds ``vocab`` once it has tokenised the captions.

    TRAIN_TEXT_TOWER concerns the pretrained open_clip tower only; the scratch encoder is always trained, so
    there it is ignored and recorded as ``train_tower=False`` (ADR 0031).
    """
    args = _args("text_args", cfg)
    return {**args, "train_tower": args["train_tower"] and args["kind"] == "open_clip"}


def unet_args(cfg: dict, *, context_dim: int) -> dict:
    """``UNet`` arguments; ``context_dim`` is the text encoder's output width."""
    args = _args("unet_args", cfg)
    return {
        "image_size": args.pop("image_size"),
        "in_channels": 3,
        "base_channels": args.pop("base_channels"),
        "channel_mults": tuple(args.pop("channel_mults")),
        "num_res_blocks": args.pop("num_res_blocks"),
        "attention_resolutions": tuple(args.pop("attention_resolutions")),
        "time_emb_dim": args.pop("time_emb_dim"),
        "context_dim": context_dim,
        **args,
    }


def data_args(cfg: dict) -> dict:
    """``ddpm.data.load.load_dataset`` arguments (train.py adds ``cache_dir``)."""
    return dict(
        dataset=cfg["DATASET"],
        data_dir=cfg["DATA_DIR"],
        image_size=cfg["IMAGE_SIZE"],
        batch_size=cfg["BATCH_SIZE"],
        dataset_size=cfg["DATASET_SIZE"],
        dataset_seed=cfg["DATASET_SEED"],
        split=cfg["DATASET_SPLIT"],
        caption_column=cfg["CAPTION_COLUMN"],
        flip=cfg["FLIP"],
        bad_files=cfg["BAD_FILES"],
        background=tuple(cfg["BACKGROUND"]),
        resize=cfg["RESIZE"],
        cifar10_caption=cfg["CIFAR10_CAPTION"],
    )


def sampling_args(cfg: dict) -> dict:
    """A checkpoint's ``sampling``: the Sampling of GUIDANCE_SCALE, NUM_INFERENCE_STEPS, SAMPLER, DDIM_ETA and
    CLIP_DENOISED, and the speed settings its samples are drawn with."""
    return {**Sampling.from_config(cfg).as_dict(), "precision": cfg["PRECISION"], "channels_last": cfg["CHANNELS_LAST"]}


def diffusion_args(cfg: dict) -> dict:
    """``GaussianDiffusion`` arguments."""
    return _args("diffusion_args", cfg)
