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
   Every figure comes with its 95 % interval (ddpm.measure.intervals): Wilson's for an accuracy, a bootstrap within
   prompts for the prompted attributes' probability (``prompt_prob``), the distance and the diversity. The
   defaults, 80 seen and 40 held-out prompts × 8 samples, put the seen joint accuracy within ±0.02 at 0.93 (ADR 0053).
3. With ``--sweep 1,2,3,5``: joint accuracy and diversity per guidance scale (``sweep.md``, ``sweep.png``).

Outputs in ``--out`` (default ``runs/<run>/eval/``): ``eval.json``, ``samples.png``, ``sweep.png``,
``sweep.md``; ``runs/<run>/run.json`` gets the headline numbers under ``"eval"``. Scores at settings other than
the checkpoint's own go beside those, never over them (``result_key``): ``eval-dpmpp2m-15/`` and
``"eval_dpmpp2m_15"`` for ``--sampler dpmpp2m --steps 15``, ``eval-eta0/`` for ``--eta 0``, ``eval-raw/`` for
``--no-ema``. The last line printed is
``joint_accuracy=… ceiling=… heldout_joint_accuracy=… heldout_ceiling=… fd=… fd_real=… diversity=…``.

The numbers come from ``ddpm.measure.scoring`` (the real-data branch from ``ddpm.measure.caption_probe``);
``ddpm.measure.report`` draws and writes the files. Nothing here imports ``config``.
"""

import argparse
import os
import sys
from typing import Callable

import torch

from ddpm.cli import command_line, fail
from ddpm.data.load import DataError
from ddpm.files import unwritable_reason
from ddpm.measure import caption_probe
from ddpm.measure.fid import FID_WEIGHTS_FILE, fid_weights_path
from ddpm.measure.probe import DEFAULT_SETTINGS as PROBE
from ddpm.measure.probe import load_or_train_probe, load_probe, probe_path
from ddpm.measure.report import json_safe, sweep_table, update_run_json, write_outputs
from ddpm.measure.scoring import evaluate, headline_line
from ddpm.model.diffusion import ETA_SAMPLERS, SAMPLERS
from ddpm.run.checkpoint import CheckpointError
from ddpm.run.folder import all_checkpoints, checkpoint_at, newest_valid
from ddpm.run.sampling import PRECISIONS, Sampling, run_problems

DEFAULT_SWEEP = ()  # none: a sweep multiplies the samples' cost; --sweep 1,2,3,5 asks for one (ADR 0053)
MAX_PER_PROMPT = 1024  # N: a bound against typos, as sample.py's


# ---- CLI ----------------------------------------------------------------------------------------------
def _parse_sweep(text: str) -> list:
    text = (text or "").strip()
    if text.lower() in ("", "none", "off"):
        return []
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sweep takes comma-separated guidance scales like 1,2,3,5, got {text!r}")


def main(argv=None, *, log: Callable = None) -> int:
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    parser = argparse.ArgumentParser(prog="python -m ddpm.measure.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ckpt", help="checkpoint (default: the newest valid runs/*/checkpoints/*.pt by modification time)"
    )
    parser.add_argument("--runs", default="runs", help="runs folder searched without --ckpt (default: %(default)s)")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt (default: %(default)s)")
    parser.add_argument("--guidance", type=float, help="guidance scale (default: the checkpoint's GUIDANCE_SCALE)")
    parser.add_argument("--steps", type=int, help="sampling steps (default: the checkpoint's NUM_INFERENCE_STEPS)")
    parser.add_argument(
        "--sampler", choices=SAMPLERS, help=f"{', '.join(SAMPLERS)} (default: the checkpoint's SAMPLER)"
    )
    parser.add_argument(
        "--eta",
        type=float,
        help="η of ddim and dpmpp2m_sde, 0 (deterministic) to 1 (default: the checkpoint's DDIM_ETA)",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="auto (bf16 where native, else fp32), fp32 or bf16 (default: the checkpoint's)",
    )
    parser.add_argument(
        "--sweep",
        type=_parse_sweep,
        default=list(DEFAULT_SWEEP),
        help="guidance scales of the sweep, comma-separated, or 'none' (default: 1,2,3,5)",
    )
    parser.add_argument("--out", help="output folder (default: runs/<run>/eval/)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per sampling batch (default: %(default)s)")
    parser.add_argument("--probe", help="probe file to use (default: runs/.probe/probe-<hash>.pt, trained if absent)")
    parser.add_argument("--device", help="torch device for sampling (default: cuda if available, else cpu)")
    parser.add_argument(
        "--no-ema",
        action="store_true",
        help="evaluate the raw weights instead of the EMA (written to runs/<run>/eval-raw/)",
    )
    args = parser.parse_args(command_line(argv))

    if args.ckpt:
        try:
            ckpt, state = checkpoint_at(args.ckpt)  # a checkpoint, or a run folder's newest
        except CheckpointError as err:
            fail("evaluate", str(err))
    else:  # the newest checkpoint that loads, warning about each unreadable one skipped
        ckpt, state = newest_valid(all_checkpoints(args.runs))
        if state is None:
            fail(
                "evaluate",
                f"no valid checkpoint under {args.runs}/*/checkpoints/; train first (make train) or pass CKPT=",
            )
    ckpt = os.path.abspath(ckpt)
    run_dir = (
        os.path.dirname(os.path.dirname(ckpt)) if os.path.basename(os.path.dirname(ckpt)) == "checkpoints" else None
    )
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
    problems = asked.problems(state["diffusion_args"]["timesteps"], state["diffusion_args"]["objective"])
    problems += run_problems(n=args.n, n_max=MAX_PER_PROMPT, seed=args.seed, sweep=args.sweep)
    problems += [f"--batch-size {args.batch_size}: must be ≥ 1"] if args.batch_size < 1 else []
    problems += (
        [f"--no-ema: {ckpt} holds no raw weights, only the EMA's; drop --no-ema or use a training checkpoint"]
        if args.no_ema and not state.get("unet")
        else []
    )
    unwritable = unwritable_reason(out_dir)
    problems += [f"--out {out_dir}: {unwritable}; choose another folder"] if unwritable else []
    if problems:
        fail("evaluate", "; ".join(problems))

    from ddpm.run.pipeline import Pipeline  # heavy: imported once the arguments are known to be good

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        pipe = Pipeline.from_checkpoint(
            ckpt, use_ema=not args.no_ema, device=device, checkpoint=state, precision=args.precision
        )
    except CheckpointError as err:
        fail("evaluate", str(err))
    log(
        f"guidance {args.guidance:g}, {args.steps} {args.sampler} steps"
        + (f" (η {args.eta:g})" if args.sampler in ETA_SAMPLERS else "")
        + f", {args.n} samples per prompt"
    )
    if trained.get("DATASET", "shapes") != "shapes":
        return _main_real(
            pipe,
            trained,
            args,
            runs_root=runs_root,
            out_dir=out_dir,
            run_dir=run_dir,
            ckpt=ckpt,
            eval_key=eval_key,
            log=log,
        )
    image_size = int(getattr(pipe, "image_size", 32))
    if args.probe and os.path.isfile(args.probe):
        probe, probe_info = load_probe(args.probe)
        probe_file = args.probe
    else:  # a probe of the model's own image size: a 32-pixel probe reads a 16-pixel model near chance
        probe_file = args.probe
        settings = {"image_size": image_size}
        if not os.path.isfile(probe_file or probe_path(os.path.join(runs_root, ".probe"), {**PROBE, **settings})):
            log(
                f"the probe, a small CNN that reads each sample's shape, colour, background and size, judges the samples; "
                f"training it once on {PROBE['train_size']:,} real {image_size}-pixel renders (a minute or two on 2 "
                f"cores), cached in {os.path.join(runs_root, '.probe')} for every later make eval"
            )
        probe, probe_info = load_or_train_probe(
            probe_file, cache_dir=os.path.join(runs_root, ".probe"), settings=settings, log=log
        )
    log(
        "probe test accuracy (fresh real images): "
        + " ".join(f"{k}={v:.4f}" for k, v in probe_info["test_accuracy"].items())
    )

    results = evaluate(
        pipe,
        probe,
        n=args.n,
        guidance_scale=args.guidance,
        num_steps=args.steps,
        seed=args.seed,
        sweep=args.sweep,
        batch_size=args.batch_size,
        image_size=image_size,
        log=log,
        sampler=args.sampler,
        eta=args.eta,
        progress=True,
    )
    numbers = results["headline"]
    extra = {
        "checkpoint": ckpt,
        "use_ema": not args.no_ema,
        "precision": getattr(pipe, "precision", None),
        "probe": {"file": probe_file, "settings": probe_info["settings"], "test_accuracy": probe_info["test_accuracy"]},
        "train_config": getattr(pipe, "config", None),
    }
    paths = write_outputs(results, out_dir, extra=extra)
    if run_dir:
        summary = json_safe(
            {
                **numbers,
                "checkpoint": os.path.basename(ckpt),
                "n": args.n,
                "guidance_scale": args.guidance,
                "num_steps": args.steps,
                "sampler": args.sampler,
                "eta": args.eta,
                "seed": args.seed,
                "eval_json": paths["eval.json"],
            }
        )
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
    return {
        "guidance": trained.get("GUIDANCE_SCALE", 3.0),
        "steps": trained.get("NUM_INFERENCE_STEPS", 50),
        "sampler": trained.get("SAMPLER", "ddim"),
        "eta": trained.get("DDIM_ETA", 0.0),
    }


def result_key(args, own: dict) -> str:
    """run.json's key (and the default folder, "_" as "-") for these scores: "eval" for the run's own sampling
    settings (``own_settings``); a study of other settings goes beside it, never over it: "eval_raw" for the raw
    weights, then the settings that differ from the run's own, e.g. "eval_dpmpp2m_15" or "eval_raw_g3", and a
    sampling seed other than 0 ("eval_seed1")."""
    key = "eval_raw" if args.no_ema else "eval"
    if (args.sampler, args.steps) != (own["sampler"], own["steps"]):
        key += f"_{args.sampler}" + ("" if args.sampler == "ddpm" else f"_{args.steps}")  # ddpm runs all TIMESTEPS
    if args.sampler in ETA_SAMPLERS and args.eta != own["eta"]:  # the others take no η
        key += f"_eta{args.eta:g}"
    if args.guidance != own["guidance"]:
        key += f"_g{args.guidance:g}"
    if args.seed != 0:  # another sampling seed: a repeat, not a replacement
        key += f"_seed{args.seed}"
    return key


def _main_real(pipe, trained, args, *, runs_root, out_dir, run_dir, ckpt, eval_key, log) -> int:
    """``make eval`` on a cifar10 or folder model (ddpm.measure.caption_probe); FID is ``fid_for_folder``'s."""
    try:
        r = caption_probe.evaluate_real(
            pipe,
            trained,
            runs_root=runs_root,
            n=args.n,
            guidance_scale=args.guidance,
            num_steps=args.steps,
            seed=args.seed,
            batch_size=args.batch_size,
            log=log,
            sampler=args.sampler,
            eta=args.eta,
        )
    except DataError as err:
        log(f"evaluate: {err}")
        return 2
    try:
        fid_weights = fid_weights_path()
        note = (
            ""
            if os.path.isfile(fid_weights)
            else f"Inception FID not computed: {FID_WEIGHTS_FILE} is not at {fid_weights}"
        )
    except Exception as err:  # no torch hub dir: say so, the probe numbers stand
        note = f"Inception FID not computed: {err}"
    if note:
        log(note)
    path = caption_probe.write(
        {**r, "checkpoint": ckpt, "n": args.n, "guidance_scale": args.guidance, "fid": note or None}, out_dir
    )
    line = caption_probe.report_line(r)
    if run_dir:
        summary = json_safe({k: v for k, v in r.items() if not k.startswith("_") and k != "per_caption"})
        update_run_json(
            os.path.join(run_dir, "run.json"), eval_key, {**summary, "joint_accuracy": r["accuracy"], "eval_json": path}
        )
    log(f"wrote {path}")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
