"""Does the model draw what the prompt says? Probe accuracy, Fréchet distance and diversity of generated samples.

``python -m ddpm.measure.evaluate [--ckpt PATH] [--n 8] [--guidance G] [--steps S] [--eta E] [--seed 0]
[--sweep 1,2,3,5] [--out DIR]`` (``make eval``; without ``--ckpt`` the newest ``runs/*/checkpoints/*.pt``; guidance,
sampler, steps and DDIM η default to the checkpoint's own GUIDANCE_SCALE, SAMPLER, NUM_INFERENCE_STEPS, DDIM_ETA):

1. The probe (``ddpm.measure.probe``, trained on real images once and cached under ``runs/.probe/``) reads the
   attributes of real images rendered for the evaluation prompts: its accuracy there is the *ceiling*.
2. ``n`` samples per prompt, EMA weights, one fixed seed (for the noise of x_T and of a stochastic sampler's steps),
   for a fixed prompt set: ``NUM_SEEN`` captions of combinations the training split contains and ``NUM_HELDOUT`` of
   the held-out (shape, colour) pairs, which training never showed together. Reported: per-attribute and joint
   accuracy (all four attributes right) on each set, the Fréchet distance between real and generated images in the
   probe's feature space (``fd``; ``fd_real`` is the same distance between two real sets of the same size, its noise
   floor), and diversity: the mean pairwise L2 distance of probe features among the samples of one prompt, averaged.
3. A guidance sweep: joint accuracy and diversity per guidance scale (``sweep.md``, ``sweep.png``).

Outputs in ``--out`` (default ``runs/<run>/eval/``): ``eval.json``, ``samples.png``, ``sweep.png``,
``sweep.md``; ``runs/<run>/run.json`` gets the headline numbers under ``"eval"``. Scores at settings other than
the checkpoint's own go beside those, never over them (``result_key``): ``eval-dpmpp2m-15/`` and
``"eval_dpmpp2m_15"`` for ``--sampler dpmpp2m --steps 15``, ``eval-eta0/`` for ``--eta 0``, ``eval-raw/`` for
``--no-ema``. The last line printed is
``joint_accuracy=… ceiling=… heldout_joint_accuracy=… heldout_ceiling=… fd=… fd_real=… diversity=…``.

This module computes the numbers; ``ddpm.measure.report`` draws and writes the files. ``quick_eval`` is the cheap
in-training version, a fixed yardstick: train.py gives it PROBE_GUIDANCE_SCALE and PROBE_DDIM_ETA, not the
samples' GUIDANCE_SCALE and DDIM_ETA, so that its steps to a target accuracy compare across the ADRs' runs (ADR
0046, 0047); ``fid_for_folder`` is Inception FID (torch-fidelity) for real image folders. Nothing here imports
``config``.
"""

import argparse
import math
import os
import re
import sys
import time
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ddpm.cli import command_line
from ddpm.files import unwritable_reason
from ddpm.run.checkpoint import CheckpointError, all_checkpoints, load_checkpoint, newest_valid
from ddpm.run.sampling import PRECISIONS, Sampling, run_problems
from ddpm.data.shapes import ATTRIBUTES, all_combinations, caption, render
from ddpm.model.diffusion import SAMPLERS
from ddpm.measure.distances import diversity, frechet_distance
from ddpm.measure.probe import accuracy, load_or_train_probe, load_probe, prompted_probability
from ddpm.measure.report import fmt_number, json_safe, sweep_table, update_run_json, write_outputs

NUM_SEEN = 24  # prompts drawn from all_combinations("train")
NUM_HELDOUT = 12  # prompts drawn from all_combinations("heldout")
PROMPT_SEED = 20_240_601  # fixes which prompts; not the sampling seed
REAL_SEED = 777_001  # seed of the real reference renders (ceiling, FD reference)
REAL_PER_PROMPT = 32  # real renders per prompt for the ceiling (at least 2·n are rendered)
DEFAULT_SWEEP = (1.0, 2.0, 3.0, 5.0)
MAX_PER_PROMPT = 1024  # N: a bound against typos, as sample.py's
FID_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
_CAPTION_RE = re.compile(r"^a (\w+) (\w+) (\w+) on an? (\w+) background$")


# ---- prompts and real references --------------------------------------------------------------------
def eval_prompts(num_seen: int = NUM_SEEN, num_heldout: int = NUM_HELDOUT, seed: int = PROMPT_SEED) -> tuple:
    """(seen, heldout): lists of (shape, colour, background, size), the same on every machine."""
    rng = np.random.default_rng(seed)
    out = []
    for split, k in (("train", num_seen), ("heldout", num_heldout)):
        combos = all_combinations(split)
        picks = rng.choice(len(combos), size=min(k, len(combos)), replace=False)
        out.append([combos[i] for i in sorted(picks)])
    return tuple(out)


def parse_caption(text: str) -> tuple:
    """The inverse of ``data.caption``: "a large red circle on a blue background" → ("circle", "red", "blue", "large")."""
    m = _CAPTION_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a shapes caption: {text!r}; expected 'a <size> <colour> <shape> on a <colour> background'")
    size, color, shape, background = m.groups()
    combo = (shape, color, background, size)
    for name, value in zip(ATTRIBUTES, combo):
        if value not in ATTRIBUTES[name]:
            raise ValueError(f"caption {text!r}: unknown {name} {value!r}; allowed: {', '.join(ATTRIBUTES[name])}")
    return combo


def _as_combo(p) -> tuple:
    return parse_caption(p) if isinstance(p, str) else tuple(p)


def labels_for(combos: Sequence[tuple], n: int) -> dict:
    """attribute → (len(combos)·n,) long, each combo repeated n times in a row (the generation order)."""
    return {name: torch.tensor([ATTRIBUTES[name].index(c[i]) for c in combos for _ in range(n)])
            for i, name in enumerate(ATTRIBUTES)}


def render_real(combos: Sequence[tuple], n: int, *, seed: int, image_size: int) -> torch.Tensor:
    """(len(combos)·n, 3, H, W) real images in [-1, 1], n per combo in a row, deterministic in seed."""
    rng = np.random.default_rng(seed)
    arrays = [render(*c, rng, image_size) for c in combos for _ in range(n)]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1


# ---- metrics ------------------------------------------------------------------------------------------
def score(probe, images: torch.Tensor, combos: Sequence[tuple], n: int, features: Optional[torch.Tensor] = None) -> dict:
    """Per-attribute accuracy, ``joint``, ``diversity`` of images generated n per combo in a row."""
    images = images.float().cpu()
    labels = labels_for(combos, n)
    probs = probe.probabilities(images)
    acc = accuracy({name: p.argmax(1) for name, p in probs.items()}, labels)
    feats = probe.features(images) if features is None else features
    return {**acc, **prompted_probability(probs, labels), "diversity": diversity(feats, n)}


# ---- generation ---------------------------------------------------------------------------------------
def generate(pipe, combos: Sequence[tuple], n: int, *, guidance_scale: float, num_steps: int, seed: int,
             batch_size: int = 64, sampler: str = "ddim", eta: float = 0.0) -> torch.Tensor:
    """n images per combo, in order, from ``pipe.generate`` (``sampler``; DDIM's η), float32 on CPU."""
    prompts = [caption(*c) for c in combos for _ in range(n)]
    images = pipe.generate(prompts, guidance_scale=guidance_scale, num_steps=num_steps, sampler=sampler, eta=eta,
                           seed=seed, batch_size=batch_size)
    images = images.float().cpu()
    if images.shape[0] != len(prompts):
        raise RuntimeError(f"generate() returned {images.shape[0]} images for {len(prompts)} prompts")
    return images


def quick_eval(pipe_like, probe, *, prompts: Optional[Sequence] = None, n: int = 2, guidance_scale: float = 3.0,
               num_steps: int = 20, seed: int = 0, batch_size: int = 64, sampler: str = "ddim", eta: float = 0.0) -> dict:
    """The cheap in-training check: n samples for each prompt (captions or attribute tuples; default: 4 seen
    and 4 held-out evaluation prompts), scored by the probe. Returns flat floats for logging:
    ``joint_accuracy``, ``<attribute>_accuracy``, ``diversity`` (None when n < 2), ``fd`` against real renders
    of the same prompts (few samples: compare it only between steps of one run), ``seconds``. ``eta``: DDIM's η
    (train.py passes PROBE_DDIM_ETA, 0 by default, whatever the samples' DDIM_ETA: ADR 0046, 0047).
    """
    if hasattr(probe, "quick_eval"):  # a real dataset's caption probe (ddpm.measure.caption_probe)
        return probe.quick_eval(pipe_like, n=n, guidance_scale=guidance_scale, num_steps=num_steps, seed=seed,
                                batch_size=batch_size, sampler=sampler, eta=eta)
    start = time.perf_counter()
    if prompts is None:
        seen, held = eval_prompts()
        combos = seen[:4] + held[:4]
    else:
        combos = [_as_combo(p) for p in prompts]
    if not combos:
        raise ValueError("quick_eval needs at least one prompt")
    images = generate(pipe_like, combos, n, guidance_scale=guidance_scale, num_steps=num_steps, seed=seed,
                      batch_size=batch_size, sampler=sampler, eta=eta)
    feats = probe.features(images)
    s = score(probe, images, combos, n, features=feats)
    out = {"joint_accuracy": s["joint"], **{f"{name}_accuracy": s[name] for name in ATTRIBUTES},
           **{k: s[k] for k in ("prompt_prob", "joint_prob", *(f"{name}_prob" for name in ATTRIBUTES))},
           "diversity": s["diversity"]}
    real = render_real(combos, n, seed=REAL_SEED, image_size=images.shape[-1])
    out["fd"] = frechet_distance(probe.features(real), feats) if len(images) >= 2 else None
    out["seconds"] = time.perf_counter() - start
    return out


def evaluate(pipe, probe, *, n: int = 8, guidance_scale: float = 3.0, num_steps: int = 50, seed: int = 0,
             sweep: Sequence[float] = (), batch_size: int = 64, image_size: int = 32,
             num_seen: int = NUM_SEEN, num_heldout: int = NUM_HELDOUT, log: Callable = print,
             sampler: str = "ddim", eta: float = 0.0) -> dict:
    """The full evaluation of one generator; returns the results dict (images under ``"_images"``)."""
    seen, held = eval_prompts(num_seen, num_heldout)
    combos = seen + held
    k_seen = len(seen) * n

    # The ceiling: the probe on real renders of the same prompts.
    per = max(REAL_PER_PROMPT, 2 * n)
    real = render_real(combos, per, seed=REAL_SEED, image_size=image_size)
    real_feats = probe.features(real)
    ceiling_seen = score(probe, real[: len(seen) * per], seen, per, features=real_feats[: len(seen) * per])
    ceiling_held = score(probe, real[len(seen) * per :], held, per, features=real_feats[len(seen) * per :])
    # FD references: the first n and the next n real renders of each prompt (same count as generated).
    grouped = real_feats.reshape(len(combos), per, -1)
    ref_a, ref_b = grouped[:, :n].reshape(-1, grouped.shape[-1]), grouped[:, n : 2 * n].reshape(-1, grouped.shape[-1])
    fd_real = frechet_distance(ref_a, ref_b) if len(ref_a) >= 2 else None
    log(f"ceiling (probe on real renders of the prompts): seen joint={ceiling_seen['joint']:.4f} "
        f"held-out joint={ceiling_held['joint']:.4f}; real-vs-real fd={fd_real}")

    def run_at(scale: float) -> dict:
        t0 = time.perf_counter()
        images = generate(pipe, combos, n, guidance_scale=scale, num_steps=num_steps, seed=seed, batch_size=batch_size,
                          sampler=sampler, eta=eta)
        feats = probe.features(images)
        r = {
            "guidance_scale": scale,
            "seen": score(probe, images[:k_seen], seen, n, features=feats[:k_seen]),
            "heldout": score(probe, images[k_seen:], held, n, features=feats[k_seen:]),
            "diversity": diversity(feats, n),
            "fd": frechet_distance(ref_a, feats) if len(feats) >= 2 else None,
            "seconds": round(time.perf_counter() - t0, 2),
            "_images": images,
        }
        log(f"guidance {scale:g}: seen joint={r['seen']['joint']:.4f} held-out joint={r['heldout']['joint']:.4f} "
            f"fd={fmt_number(r['fd'])} diversity={fmt_number(r['diversity'])} ({r['seconds']:.1f} s, {len(images)} images)")
        return r

    main_run = run_at(guidance_scale)
    sweep_runs = []
    for scale in sweep:
        r = main_run if math.isclose(scale, guidance_scale) else run_at(scale)
        sweep_runs.append({k: v for k, v in r.items() if k != "_images"})

    results = {
        "settings": {"n": n, "guidance_scale": guidance_scale, "num_steps": num_steps, "seed": seed, "sampler": sampler,
                     "eta": eta, "sweep": list(sweep), "batch_size": batch_size, "image_size": image_size,
                     "prompt_seed": PROMPT_SEED, "real_seed": REAL_SEED, "real_per_prompt": per,
                     "seen_prompts": [caption(*c) for c in seen], "heldout_prompts": [caption(*c) for c in held]},
        "ceiling": {"seen": ceiling_seen, "heldout": ceiling_held},
        "seen": main_run["seen"],
        "heldout": main_run["heldout"],
        "fd": main_run["fd"],
        "fd_real": fd_real,
        "diversity": main_run["diversity"],
        "diversity_real": diversity(ref_a, n),
        "sweep": sweep_runs,
        "seconds": main_run["seconds"],
        "_images": main_run["_images"],
        "_num_seen": len(seen),
    }
    results["headline"] = headline_numbers(results)
    return results


def headline_numbers(results: dict) -> dict:
    return {
        "joint_accuracy": results["seen"]["joint"],
        "ceiling": results["ceiling"]["seen"]["joint"],
        "heldout_joint_accuracy": results["heldout"]["joint"],
        "heldout_ceiling": results["ceiling"]["heldout"]["joint"],
        "fd": results["fd"],
        "fd_real": results["fd_real"],
        "diversity": results["diversity"],
    }


def headline_line(numbers: dict) -> str:
    """``key=value`` pairs on one line; floats below 1 get 3 decimals, others 4 significant digits."""
    return " ".join(f"{k}={fmt_number(v)}" for k, v in numbers.items())


# ---- FID for real datasets ----------------------------------------------------------------------------
class FidUnavailableError(RuntimeError):
    """torch-fidelity or its Inception weights are missing; the message says what to install or download."""


def fid_weights_path() -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints", FID_WEIGHTS_FILE)


def fid_for_folder(real_dir: str, fake_dir: str) -> float:
    """Inception FID between two image folders with torch-fidelity, offline: needs the package and its weights."""
    try:
        import torch_fidelity  # noqa: F401  (optional dependency)
    except ImportError as err:
        raise FidUnavailableError(
            "fid_for_folder needs torch-fidelity: `pip install torch-fidelity`, and its Inception weights file "
            f"{FID_WEIGHTS_FILE} in the torch hub cache ({fid_weights_path()}), as this machine cannot download it"
        ) from err
    weights = fid_weights_path()
    if not os.path.isfile(weights):
        raise FidUnavailableError(
            f"torch-fidelity is installed but its Inception weights are not: put {FID_WEIGHTS_FILE} at {weights} "
            "(the torch hub cache, `torch.hub.get_dir()`/checkpoints) before computing FID"
        )
    for d in (real_dir, fake_dir):
        if not os.path.isdir(d):
            raise FileNotFoundError(f"{d}: no such image folder")
    metrics = torch_fidelity.calculate_metrics(input1=fake_dir, input2=real_dir, fid=True,
                                               cuda=torch.cuda.is_available(), verbose=False)
    return float(metrics["frechet_inception_distance"])


# ---- CLI ----------------------------------------------------------------------------------------------
def _parse_sweep(text: str) -> list:
    text = (text or "").strip()
    if text.lower() in ("", "none", "off"):
        return []
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sweep takes comma-separated guidance scales like 1,2,3,5, got {text!r}")


def fail(message: str) -> None:
    """One line on stderr and exit code 2 (bad input), never a traceback."""
    print(f"evaluate: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def main(argv=None, *, log: Callable = None) -> int:
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    parser = argparse.ArgumentParser(prog="python -m ddpm.measure.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", help="checkpoint (default: the newest valid runs/*/checkpoints/*.pt by modification time)")
    parser.add_argument("--runs", default="runs", help="runs folder searched without --ckpt (default: %(default)s)")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt (default: %(default)s)")
    parser.add_argument("--guidance", type=float, help="guidance scale (default: the checkpoint's GUIDANCE_SCALE)")
    parser.add_argument("--steps", type=int, help="sampling steps (default: the checkpoint's NUM_INFERENCE_STEPS)")
    parser.add_argument("--sampler", choices=SAMPLERS, help="ddim, ddpm or dpmpp2m (default: the checkpoint's SAMPLER)")
    parser.add_argument("--eta", type=float, help="DDIM η, 0 (deterministic) to 1 (default: the checkpoint's DDIM_ETA)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="auto (bf16 where native, else fp32), fp32 or bf16 (default: the checkpoint's)")
    parser.add_argument("--sweep", type=_parse_sweep, default=list(DEFAULT_SWEEP),
                        help="guidance scales of the sweep, comma-separated, or 'none' (default: 1,2,3,5)")
    parser.add_argument("--out", help="output folder (default: runs/<run>/eval/)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per sampling batch (default: %(default)s)")
    parser.add_argument("--probe", help="probe file to use (default: runs/.probe/probe-<hash>.pt, trained if absent)")
    parser.add_argument("--device", help="torch device for sampling (default: cuda if available, else cpu)")
    parser.add_argument("--no-ema", action="store_true",
                        help="evaluate the raw weights instead of the EMA (written to runs/<run>/eval-raw/)")
    args = parser.parse_args(command_line(argv))

    if args.ckpt:
        try:
            ckpt, state = args.ckpt, load_checkpoint(args.ckpt)
        except CheckpointError as err:
            fail(str(err))
    else:  # the newest checkpoint that loads, warning about each unreadable one skipped
        ckpt, state = newest_valid(all_checkpoints(args.runs))
        if state is None:
            fail(f"no valid checkpoint under {args.runs}/*/checkpoints/; train first (make train) or pass CKPT=")
    ckpt = os.path.abspath(ckpt)
    run_dir = os.path.dirname(os.path.dirname(ckpt)) if os.path.basename(os.path.dirname(ckpt)) == "checkpoints" else None
    runs_root = os.path.dirname(run_dir) if run_dir else os.path.abspath(args.runs)
    log(f"checkpoint: {ckpt}")

    trained = state.get("config") or {}  # what the run sampled its grids with
    own = own_settings(trained)
    args.guidance = args.guidance if args.guidance is not None else own["guidance"]
    args.steps = args.steps if args.steps is not None else own["steps"]
    args.sampler = args.sampler or own["sampler"]
    args.eta = args.eta if args.eta is not None else own["eta"]
    eval_key = result_key(args, own)
    out_dir = args.out or os.path.join(run_dir or os.path.dirname(ckpt), eval_key.replace("_", "-"))
    asked = Sampling(guidance_scale=args.guidance, num_steps=args.steps, sampler=args.sampler, eta=args.eta)
    problems = asked.problems(state["diffusion_args"]["timesteps"])
    problems += run_problems(n=args.n, n_max=MAX_PER_PROMPT, seed=args.seed, sweep=args.sweep)
    problems += [f"--batch-size {args.batch_size}: must be ≥ 1"] if args.batch_size < 1 else []
    problems += [f"--no-ema: {ckpt} holds no raw weights, only the EMA's; drop --no-ema or use a training checkpoint"
                 ] if args.no_ema and not state.get("unet") else []
    unwritable = unwritable_reason(out_dir)
    problems += [f"--out {out_dir}: {unwritable}; choose another folder"] if unwritable else []
    if problems:
        fail("; ".join(problems))

    from ddpm.run.pipeline import Pipeline  # heavy; here so the library functions import without it

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        pipe = Pipeline.from_checkpoint(ckpt, use_ema=not args.no_ema, device=device, checkpoint=state, precision=args.precision)
    except CheckpointError as err:
        fail(str(err))
    log(f"guidance {args.guidance:g}, {args.steps} {args.sampler} steps"
        + (f" (η {args.eta:g})" if args.sampler == "ddim" else "") + f", {args.n} samples per prompt")
    if trained.get("DATASET", "shapes") != "shapes":
        return _main_real(pipe, trained, args, runs_root=runs_root, out_dir=out_dir, run_dir=run_dir, ckpt=ckpt,
                          eval_key=eval_key, log=log)
    if args.probe and os.path.isfile(args.probe):
        probe, probe_info = load_probe(args.probe)
        probe_file = args.probe
    else:
        probe_file = args.probe
        probe, probe_info = load_or_train_probe(probe_file, cache_dir=os.path.join(runs_root, ".probe"), log=log)
    log("probe test accuracy (fresh real images): " + " ".join(f"{k}={v:.4f}" for k, v in probe_info["test_accuracy"].items()))
    image_size = int(getattr(pipe, "image_size", 32))

    results = evaluate(pipe, probe, n=args.n, guidance_scale=args.guidance, num_steps=args.steps, seed=args.seed,
                       sweep=args.sweep, batch_size=args.batch_size, image_size=image_size, log=log, sampler=args.sampler,
                       eta=args.eta)
    numbers = results["headline"]
    extra = {"checkpoint": ckpt, "use_ema": not args.no_ema, "precision": getattr(pipe, "precision", None),
             "probe": {"file": probe_file, "settings": probe_info["settings"], "test_accuracy": probe_info["test_accuracy"]},
             "train_config": getattr(pipe, "config", None)}
    paths = write_outputs(results, out_dir, extra=extra)
    if run_dir:
        summary = json_safe({**numbers, "checkpoint": os.path.basename(ckpt), "n": args.n, "guidance_scale": args.guidance,
                          "num_steps": args.steps, "sampler": args.sampler, "eta": args.eta, "seed": args.seed,
                          "eval_json": paths["eval.json"]})
        try:
            if update_run_json(os.path.join(run_dir, "run.json"), eval_key, summary):
                log(f"updated {os.path.join(run_dir, 'run.json')} (key '{eval_key}')")
        except RuntimeError as err:  # the evaluation itself is written; say so and go on
            log(f"warning: {err}")
    if results["sweep"]:
        print(sweep_table(results["sweep"]))
    log(f"wrote {', '.join(paths.values())}")
    print(headline_line(numbers), flush=True)
    return 0


def own_settings(trained: dict) -> dict:
    """The sampling settings a run drew its grids with (its config; older checkpoints name fewer of them)."""
    return {"guidance": trained.get("GUIDANCE_SCALE", 3.0), "steps": trained.get("NUM_INFERENCE_STEPS", 50),
            "sampler": trained.get("SAMPLER", "ddim"), "eta": trained.get("DDIM_ETA", 0.0)}


def result_key(args, own: dict) -> str:
    """run.json's key (and the default folder, "_" as "-") for these scores: "eval" for the run's own sampling
    settings (``own_settings``); a study of other settings goes beside it, never over it: "eval_raw" for the raw
    weights, then the settings that differ from the run's own, e.g. "eval_dpmpp2m_15" or "eval_raw_g3", and a
    sampling seed other than 0 ("eval_seed1")."""
    key = "eval_raw" if args.no_ema else "eval"
    if (args.sampler, args.steps) != (own["sampler"], own["steps"]):
        key += f"_{args.sampler}" + ("" if args.sampler == "ddpm" else f"_{args.steps}")  # ddpm runs all TIMESTEPS
    if args.sampler == "ddim" and args.eta != own["eta"]:  # η is DDIM's alone
        key += f"_eta{args.eta:g}"
    if args.guidance != own["guidance"]:
        key += f"_g{args.guidance:g}"
    if args.seed != 0:  # another sampling seed: a repeat, not a replacement
        key += f"_seed{args.seed}"
    return key


def _main_real(pipe, trained, args, *, runs_root, out_dir, run_dir, ckpt, eval_key, log) -> int:
    """``make eval`` on a cifar10 or folder model (ddpm.measure.caption_probe); FID is ``fid_for_folder``'s."""
    from ddpm.data.load import DataError
    from ddpm.measure import caption_probe

    try:
        r = caption_probe.evaluate_real(pipe, trained, runs_root=runs_root, n=args.n, guidance_scale=args.guidance,
                                        num_steps=args.steps, seed=args.seed, batch_size=args.batch_size, log=log,
                                        sampler=args.sampler, eta=args.eta)
    except DataError as err:
        log(f"evaluate: {err}")
        return 2
    try:
        fid_weights = fid_weights_path()
        note = "" if os.path.isfile(fid_weights) else f"Inception FID not computed: {FID_WEIGHTS_FILE} is not at {fid_weights}"
    except Exception as err:  # no torch hub dir: say so, the probe numbers stand
        note = f"Inception FID not computed: {err}"
    if note:
        log(note)
    path = caption_probe.write({**r, "checkpoint": ckpt, "n": args.n, "guidance_scale": args.guidance, "fid": note or None},
                               out_dir)
    line = caption_probe.report_line(r)
    if run_dir:
        summary = json_safe({k: v for k, v in r.items() if not k.startswith("_") and k != "per_caption"})
        update_run_json(os.path.join(run_dir, "run.json"), eval_key,
                        {**summary, "joint_accuracy": r["accuracy"], "eval_json": path})
    log(f"wrote {path}")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
