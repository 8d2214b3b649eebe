"""Draw a PNG grid for one prompt: `make sample PROMPT="a red circle on a blue background"`.

Everything is rebuilt from the checkpoint alone (constructor arguments, sampling settings, EMA weights);
today's config.py is only read to warn when its decided architecture differs from the checkpoint's.
The prompt may come from --prompt or from the PROMPT environment variable, which is how the Makefile passes
it, so that quotes, $, backticks and newlines reach Python verbatim.
"""

import argparse
import math
import os
import re
import time

import torch
import torchvision.utils as vutils

from ddpm.cli import command_line, fail
from ddpm.files import atomic_write
from ddpm.model.diffusion import SAMPLERS
from ddpm.progress import progress
from ddpm.run import settings
from ddpm.run.checkpoint import CheckpointError, architecture_diff, sampling_of
from ddpm.run.export import load_model
from ddpm.run.folder import all_checkpoints, checkpoint_at, newest_valid
from ddpm.run.pipeline import Pipeline
from ddpm.run.sampling import PRECISIONS, image_path_problems, run_problems

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_IMAGES = 1024  # N: a bound against typos, not a memory estimate


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", default=None, help="the text prompt (default: $PROMPT)")
    p.add_argument("--n", type=int, default=16, help="images in the grid")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the checkpoint's)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the checkpoint's)")
    p.add_argument("--sampler", choices=SAMPLERS, default=None, help="default: the checkpoint's")
    p.add_argument("--eta", type=float, default=None, help="η of ddim and dpmpp2m_sde (default: the checkpoint's)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="auto (bf16 where native, else fp32), fp32 or bf16 (default: the checkpoint's)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt", default=None, help="checkpoint file (default: the newest under runs/)")
    p.add_argument("--runs-dir", default=os.path.join(HERE, "runs"))
    p.add_argument("--out", default=None, help="PNG path (default: runs/<run>/samples/prompt-<words>-<time>.png)")
    p.add_argument("--no-ema", action="store_true", help="sample with the raw weights instead of the EMA")
    return p.parse_args(command_line(argv))


def main(argv=None):
    args = parse_args(argv)
    prompt = args.prompt if args.prompt is not None else os.environ.get("PROMPT")
    if prompt is None:
        fail("sample.py", 'no prompt: make sample PROMPT="a red circle on a blue background"')

    if args.ckpt:
        try:
            path, ckpt = checkpoint_at(args.ckpt, load=load_model)  # a run folder, a .pt or a .safetensors export
        except CheckpointError as err:
            fail("sample.py", str(err))
    else:
        path, ckpt = newest_valid(all_checkpoints(args.runs_dir))
        if ckpt is None:
            fail(
                "sample.py",
                f"no checkpoint under {args.runs_dir}: run `make train` first (or pass CKPT=path/to/ckpt.pt)",
            )

    s = sampling_of(ckpt).replace(
        guidance_scale=args.guidance, num_steps=args.steps, sampler=args.sampler, eta=args.eta
    )
    out = args.out or default_out(path, prompt)
    problems = s.problems(ckpt["diffusion_args"]["timesteps"], ckpt["diffusion_args"]["objective"]) + run_problems(
        n=args.n, n_max=MAX_IMAGES, seed=args.seed
    )
    if problems := problems + image_path_problems(out):
        fail("sample.py", "; ".join(problems))

    describe(path, ckpt)
    try:
        pipe = Pipeline.from_checkpoint(path, use_ema=not args.no_ema, checkpoint=ckpt, precision=args.precision)
    except CheckpointError as err:
        fail("sample.py", str(err))
    if not prompt.strip():
        print("empty prompt: sampling unconditionally (the null prompt of classifier-free guidance)")
    unseen_words = getattr(pipe.text_encoder, "unseen_words", None)
    unseen = unseen_words(pipe.tokenizer, prompt) if unseen_words else []
    if unseen:
        print(
            f"warning: {', '.join(repr(w) for w in unseen)} never appeared in the training captions; "
            "the model cannot follow these words"
        )

    start = time.perf_counter()
    images = pipe.generate(
        [prompt] * args.n,
        seed=args.seed,
        progress=lambda it: progress(it, desc="sampling", unit="step", leave=False),
        **s.as_dict(),
    )
    elapsed = time.perf_counter() - start

    try:  # atomically: a full disk leaves no half image behind
        atomic_write(
            out,
            lambda tmp: vutils.save_image(images * 0.5 + 0.5, tmp, nrow=int(math.ceil(math.sqrt(args.n))), padding=2),
        )
    except OSError as err:
        fail("sample.py", f"could not write {out} ({(err.strerror or str(err)).lower()}); nothing was written", code=1)
    steps = pipe.diffusion.timesteps if s.sampler == "ddpm" else s.num_steps
    print(f"{args.n} images of {prompt!r} ({s.sampler}, {steps} steps, guidance {s.guidance_scale}) in {elapsed:.1f} s")
    print(out)
    return out


def describe(path, ckpt):
    """Say which checkpoint and decision this is, and warn when today's decided architecture differs."""
    adr = (ckpt.get("provenance") or {}).get("adr") or {}
    flag = " (exploratory run)" if (ckpt.get("provenance") or {}).get("exploratory") else ""
    print(f"checkpoint {path}: step {ckpt['step']}, trained under ADR {adr.get('number')}: {adr.get('title')}{flag}")
    try:
        from ddpm.decisions import check as decisions

        decided, _ = decisions.replay(os.path.join(HERE, "decisions"))
        today = {
            "unet_args": settings.unet_args(decided, context_dim=ckpt["unet_args"]["context_dim"]),
            "text_args": settings.text_args(decided),
            "diffusion_args": settings.diffusion_args(decided),
        }
        drift = architecture_diff(
            ckpt,
            today,
            names=("checkpoint", "decisions now"),
            ignore=("vocab", "context_dim"),
            label=settings.config_name,
            sep=", ",
        )
    except Exception:  # noqa: BLE001 - sampling never depends on today's decisions; the warning is best effort
        return
    if drift:
        print(
            "note: today's decisions describe a different model than this checkpoint (sampling uses the "
            "checkpoint's):\n  " + "\n  ".join(drift)
        )


def default_out(ckpt_path, prompt):
    """runs/<run>/samples/prompt-<words>-<time>.png for a run's checkpoint; beside the file for any other (an
    export, a checkpoint copied elsewhere): never above the folder the checkpoint lives in."""
    folder = os.path.dirname(os.path.abspath(ckpt_path))
    if os.path.basename(folder) == "checkpoints":
        folder = os.path.join(os.path.dirname(folder), "samples")
    words = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:60] or "unconditional"
    return os.path.join(folder, f"prompt-{words}-{time.strftime('%Y%m%d-%H%M%S')}.png")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
