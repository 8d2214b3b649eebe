"""Train the text-conditional DDPM: `make train` (or `python train.py [--set KEY=VALUE ...] [--resume]`).

Reads top to bottom: config → decisions check → seed/device → data → text encoder → UNet → diffusion →
optimizer/EMA → resume → loop (lr, batch, caption dropout, loss, backward, clip, step, EMA, log, periodic
sample grid and checkpoint). A run lives in runs/<name>/: TensorBoard events, samples/, checkpoints/, run.json.
"""

import argparse
import copy
import datetime
import math
import os
import sys
import time

import torch
import torchvision.utils as vutils
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ddpm.run import checkpoint as ckpts
from ddpm.data.load import DataError, load_dataset
from ddpm.data.shapes import COLOR_NAMES, SHAPES, SIZE_NAMES, caption
from ddpm.model.diffusion import GaussianDiffusion
from ddpm.model.ema import ema_update
from ddpm.run.pipeline import CompiledOrEager, Pipeline, autocast, memory_format
from ddpm.decisions import provenance
from ddpm.run import settings
from ddpm.measure.evaluate import quick_eval
from ddpm.measure.caption_probe import training_probe
from ddpm.files import read_json, write_json
from ddpm.run.settings import config_from_module, parse_overrides, validate
from ddpm.model.text import build_text_encoder, cache_fits, encode_in_batches, tokenizer_for
from ddpm.model.unet import UNet

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_BAD_STEPS = 5  # consecutive non-finite losses before the run stops (the last good checkpoint stays)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value for this run")
    p.add_argument("--run", default=None, help="run name (default: the date and time)")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN",
                   help="continue a run from its newest valid checkpoint (default: the newest run)")
    p.add_argument("--runs-dir", default=os.path.join(HERE, "runs"))
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps (smoke tests)")
    p.add_argument("--exploratory", action="store_true",
                   help="train even though config.py differs from the accepted decisions; the run is marked exploratory")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return p.parse_args(argv)


def grid_prompts(n: int) -> list:
    """A fixed, varied list of prompts for the training-time sample grids (every shape, colours rotating)."""
    prompts = []
    for i in range(n):
        color = COLOR_NAMES[(3 * i) % len(COLOR_NAMES)]
        background = COLOR_NAMES[(3 * i + 1 + i // len(COLOR_NAMES)) % len(COLOR_NAMES)]
        prompts.append(caption(SHAPES[i % len(SHAPES)], color, background, SIZE_NAMES[(i // len(SHAPES)) % 2]))
    return prompts


def check_decisions(config_file_values: dict, overrides: dict, exploratory: bool) -> dict:
    """Provenance of this run; refuses a config.py that the accepted decisions do not cover."""
    prov = provenance.collect(config_file_values, overrides, repo_root=HERE,
                              decisions_dir=os.path.join(HERE, "decisions"), config_path=os.path.join(HERE, "config.py"))
    if prov["decision_errors"] and not exploratory:
        sys.exit("config.py does not match the accepted decisions:\n  " + "\n  ".join(prov["decision_errors"]) +
                 "\nWrite an ADR (make adr TITLE=\"...\"), or run anyway with: make train ARGS=--exploratory")
    prov["exploratory"] = bool(prov["decision_errors"] or overrides or exploratory)
    return prov


def main(argv=None):
    args = parse_args(argv)

    # ---- config: read once, override, validate ------------------------------------------------------
    import config

    config_file_values = config_from_module(config)
    overrides = parse_overrides(args.set)
    try:
        cfg = validate({**config_file_values, **overrides})
    except ValueError as err:
        sys.exit(str(err))
    prov = check_decisions(config_file_values, overrides, args.exploratory)

    # ---- seed and device ----------------------------------------------------------------------------
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    torch.manual_seed(cfg["SEED"])
    gen = torch.Generator().manual_seed(cfg["SEED"])  # batching, timesteps, noise, caption dropout (on CPU)

    # ---- data: images in [-1, 1], captions tokenised once --------------------------------------------
    try:
        data = load_dataset(**settings.data_args(cfg), cache_dir=os.path.join(args.runs_dir, ".data-cache"))
    except DataError as err:
        print(f"train.py: {err}", file=sys.stderr)
        sys.exit(2)
    prov["data"] = data.info  # what this run was trained on, in run.json and every checkpoint
    images = data.images.to(device)  # images[idx]: (B, 3, H, W) in [-1, 1]; shapes in memory, real sets memory-mapped
    unique = sorted(set(data.captions)) + [""]  # the last entry is the null prompt of guidance
    position = {c: i for i, c in enumerate(unique)}
    caption_index = torch.tensor([position[c] for c in data.captions])  # (N,) row of each image's caption
    null_index = len(unique) - 1

    # ---- text encoder ---------------------------------------------------------------------------------
    text_args = settings.text_args(cfg)
    tokens, token_mask = tokenizer_for(text_args)(unique)
    text_args["vocab"] = tuple(sorted(set(tokens[token_mask].tolist())))  # BPE ids of the training captions
    text_encoder = build_text_encoder(**text_args).to(device)
    tokens, token_mask = tokens.to(device), token_mask.to(device)
    fits = cache_fits(len(unique), tokens.shape[1], text_encoder.dim, cfg["TEXT_CACHE_MB"])  # else: per batch (ADR 0020)
    cached = encode_in_batches(text_encoder, tokens) if text_encoder.frozen and fits else None  # frozen: encode once

    # ---- UNet and diffusion ---------------------------------------------------------------------------
    unet_args = settings.unet_args(cfg, context_dim=text_encoder.dim)
    fmt = memory_format(cfg["CHANNELS_LAST"])
    unet = UNet(**unet_args).to(device, memory_format=fmt)
    unet_step = CompiledOrEager(unet, enabled=cfg["COMPILE"], warn=tqdm.write)  # the training forward (ADR 0013)
    diffusion_args = settings.diffusion_args(cfg)
    diffusion = GaussianDiffusion(**diffusion_args).to(device)

    # ---- optimizer and EMA ----------------------------------------------------------------------------
    trainable = list(unet.parameters()) + ([] if text_encoder.frozen else list(text_encoder.parameters()))
    optimizer = torch.optim.AdamW(trainable, lr=cfg["LEARNING_RATE"], weight_decay=cfg["WEIGHT_DECAY"])
    ema_unet = copy.deepcopy(unet).eval().requires_grad_(False)
    ema_text = text_encoder if text_encoder.frozen else copy.deepcopy(text_encoder).eval().requires_grad_(False)

    # ---- run folder and resume ------------------------------------------------------------------------
    step, epoch, batch_in_epoch, perm = 0, 0, 0, None
    if args.resume:
        run_dir = newest_run(args.runs_dir) if args.resume == "latest" else os.path.join(args.runs_dir, args.resume)
        path, state = ckpts.newest_valid(list(reversed(ckpts.run_checkpoints(run_dir or ""))))
        if state is None:
            sys.exit(f"--resume: no valid checkpoint in {run_dir or args.runs_dir}; start a new run with make train")
        refuse_changed_architecture(state, unet_args, text_args, diffusion_args)
        unet.load_state_dict(state["unet"])
        ema_unet.load_state_dict(state["ema_unet"])
        if not text_encoder.frozen:
            text_encoder.load_state_dict(state["text_encoder"])
            ema_text.load_state_dict(state["ema_text_encoder"])
        optimizer.load_state_dict(state["optimizer"])
        step, epoch, batch_in_epoch, perm = state["step"], state["epoch"], state["batch_in_epoch"], state["perm"]
        torch.set_rng_state(state["rng"]["torch"])
        gen.set_state(state["rng"]["batches"])
        adr = state["provenance"].get("adr") or {}
        print(f"resuming {path} (step {step}, epoch {epoch}), trained under ADR {adr.get('number')}: {adr.get('title')}")
    else:
        run_dir = os.path.join(args.runs_dir, args.run or datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
        if os.path.exists(os.path.join(run_dir, "checkpoints")):
            sys.exit(f"run {run_dir} exists already: pick another --run name, or continue it with --resume")
    os.makedirs(os.path.join(run_dir, "samples"), exist_ok=True)
    data.write_report(run_dir)
    writer = SummaryWriter(run_dir, purge_step=step)  # purge_step drops events logged after the checkpoint
    run_info = {"name": os.path.basename(run_dir), "started": datetime.datetime.now().isoformat(timespec="seconds"),
                "config": cfg, "provenance": prov, "step": step, "epoch": epoch, "final_loss": None}
    run_json = os.path.join(run_dir, "run.json")
    started = read_json(run_json).get("started", run_info["started"])  # a resumed run keeps its start
    write_json({**run_info, "started": started}, run_json, allow_nan=True)
    if step == 0:
        log_provenance(writer, cfg, prov)

    sampling = dict(guidance_scale=cfg["GUIDANCE_SCALE"], num_steps=cfg["NUM_INFERENCE_STEPS"], sampler=cfg["SAMPLER"],
                    eta=cfg["DDIM_ETA"], clip_x0=cfg["CLIP_DENOISED"], precision=cfg["PRECISION"],
                    channels_last=cfg["CHANNELS_LAST"])
    preview = Pipeline(unet=ema_unet, text_encoder=ema_text, tokenizer=tokenizer_for(text_args), diffusion=diffusion,
                       image_size=cfg["IMAGE_SIZE"], precision=cfg["PRECISION"], channels_last=cfg["CHANNELS_LAST"],
                       config=cfg, device=device)
    prompts = grid_prompts(cfg["SAMPLE_GRID_SIZE"]) if cfg["DATASET"] == "shapes" else data.grid_captions(cfg["SAMPLE_GRID_SIZE"])
    probe = training_probe(data, cache_dir=os.path.join(args.runs_dir, ".probe"), image_size=cfg["IMAGE_SIZE"],
                           log=print) if cfg["EVAL_EVERY"] else None  # None: free-text captions, skipped
    curve = read_json(run_json).get("quality_curve", [])  # (minutes of training, step, joint accuracy)
    train_seconds = curve[-1]["minutes"] * 60 if curve else 0.0

    def save_checkpoint(loss_value):
        state = {
            "format": ckpts.FORMAT_VERSION, "unet_args": unet_args, "text_args": text_args,
            "diffusion_args": diffusion_args, "sampling": sampling, "config": cfg, "provenance": prov,
            "unet": unet.state_dict(), "ema_unet": ema_unet.state_dict(),
            "text_encoder": None if text_encoder.frozen else text_encoder.state_dict(),
            "ema_text_encoder": None if text_encoder.frozen else ema_text.state_dict(),
            "optimizer": optimizer.state_dict(), "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
            "perm": perm, "rng": {"torch": torch.get_rng_state(), "batches": gen.get_state()}, "loss": loss_value,
        }
        ckpts.save_atomic(state, os.path.join(run_dir, "checkpoints", ckpts.checkpoint_name(epoch, step)))
        ckpts.prune(run_dir, cfg["KEEP_CHECKPOINTS"])
        write_json({**read_json(run_json), "step": step, "epoch": epoch, "final_loss": loss_value}, run_json, allow_nan=True)

    def evaluate():
        """The cheap probe evaluation (ddpm/evaluate.py): a point of the time-to-quality curve."""
        scores = quick_eval(preview, probe, guidance_scale=cfg["GUIDANCE_SCALE"], num_steps=cfg["NUM_INFERENCE_STEPS"],
                            seed=cfg["SEED"])
        for key, value in scores.items():
            if value is not None:
                writer.add_scalar(f"eval/{key}", value, step)
        curve.append({"minutes": round(train_seconds / 60, 2), "step": step, "joint_accuracy": scores["joint_accuracy"]})
        write_json({**read_json(run_json), "quality_curve": curve}, run_json, allow_nan=True)
        return scores["joint_accuracy"]

    def sample_grid():
        images = preview.generate(prompts, guidance_scale=cfg["GUIDANCE_SCALE"], num_steps=cfg["NUM_INFERENCE_STEPS"],
                                  sampler=cfg["SAMPLER"], eta=cfg["DDIM_ETA"], clip_x0=cfg["CLIP_DENOISED"], seed=cfg["SEED"])
        grid = vutils.make_grid(images * 0.5 + 0.5, nrow=int(math.ceil(math.sqrt(len(prompts)))), padding=2)
        path = os.path.join(run_dir, "samples", f"epoch{epoch:04d}-step{step:07d}.png")
        vutils.save_image(grid, path)
        with open(os.path.join(run_dir, "samples", "prompts.txt"), "w") as f:
            f.write("\n".join(prompts) + "\n")
        writer.add_image("samples", grid, step)
        return path

    # ---- the loop -------------------------------------------------------------------------------------
    n, bs = len(images), cfg["BATCH_SIZE"]
    steps_per_epoch = n // bs  # the remainder of each shuffled epoch is dropped
    total = cfg["EPOCHS"] * steps_per_epoch if args.max_steps is None else min(args.max_steps, cfg["EPOCHS"] * steps_per_epoch)
    bar = tqdm(total=total, initial=step, unit="step", dynamic_ncols=True, disable=None)
    quartile_sum, quartile_count = torch.zeros(4), torch.zeros(4)
    bad_steps, loss_value, tick, tick_step = 0, float("nan"), time.perf_counter(), step
    unet.train()
    text_encoder.train()
    if cfg["COMPILE"] and step < total:
        tqdm.write("compiling the UNet: the first step takes up to a minute or two (cached afterwards); COMPILE in config.py")
    while step < total:
        if perm is None or batch_in_epoch >= steps_per_epoch:
            perm, batch_in_epoch = torch.randperm(n, generator=gen), 0
        idx = perm[batch_in_epoch * bs : (batch_in_epoch + 1) * bs]
        lr = cfg["LEARNING_RATE"] * min(1.0, (step + 1) / max(1, cfg["WARMUP_STEPS"]))  # linear warm-up, then constant
        for group in optimizer.param_groups:
            group["lr"] = lr

        step_start = time.perf_counter()
        x0 = images[idx.to(device)].contiguous(memory_format=fmt)
        drop = torch.rand(len(idx), generator=gen) < cfg["CAPTION_DROPOUT"]  # classifier-free guidance training
        cap = torch.where(drop, null_index, caption_index[idx]).to(device)
        t = torch.randint(0, cfg["TIMESTEPS"], (len(idx),), generator=gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        with autocast(cfg["PRECISION"], device):
            with torch.set_grad_enabled(not text_encoder.frozen):  # frozen and uncached: per batch, no graph
                context = cached[cap] if cached is not None else text_encoder(tokens[cap])
            losses = diffusion.loss_per_sample(unet_step, x0, t, noise, context, token_mask[cap])  # (B,)
        loss = (diffusion.min_snr_weights(t, cfg["MIN_SNR_GAMMA"]) * losses).mean()  # losses stay unweighted for logs

        if not torch.isfinite(loss):
            bad_steps += 1
            optimizer.zero_grad(set_to_none=True)
            writer.add_scalar("train/skipped_nonfinite", bad_steps, step)
            if bad_steps >= MAX_BAD_STEPS:
                sys.exit(f"loss was not finite for {bad_steps} steps in a row at step {step}; stopping. "
                         f"The last good checkpoint in {run_dir}/checkpoints is untouched; lower LEARNING_RATE and resume.")
            batch_in_epoch += 1
            continue
        bad_steps = 0
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg["GRAD_CLIP"])
        optimizer.step()
        ema_update(ema_unet, unet, decay=cfg["EMA_DECAY"], step=step)
        if not text_encoder.frozen:
            ema_update(ema_text, text_encoder, decay=cfg["EMA_DECAY"], step=step)
        step += 1
        batch_in_epoch += 1
        loss_value = loss.item()
        q = (t.cpu() * 4 // cfg["TIMESTEPS"]).clamp(max=3)
        quartile_sum.index_add_(0, q, losses.detach().cpu())
        quartile_count.index_add_(0, q, torch.ones_like(losses.detach().cpu()))

        if step % 25 == 0 or step == total:
            now = time.perf_counter()
            img_s = (step - tick_step) * bs / max(now - tick, 1e-9)
            tick, tick_step = now, step
            writer.add_scalar("train/loss", loss_value, step)
            writer.add_scalar("train/lr", lr, step)
            writer.add_scalar("train/grad_norm", grad_norm.item(), step)
            writer.add_scalar("train/images_per_s", img_s, step)
            for i in range(4):
                if quartile_count[i] > 0:
                    writer.add_scalar(f"loss_by_t/q{i + 1}", (quartile_sum[i] / quartile_count[i]).item(), step)
            quartile_sum.zero_()
            quartile_count.zero_()
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.1e}", img_s=f"{img_s:.0f}")
        bar.update(1)

        end_of_epoch = batch_in_epoch >= steps_per_epoch
        if end_of_epoch:
            epoch += 1
        last = step >= total
        if (end_of_epoch and epoch % cfg["GENERATE_SAMPLES_EVERY"] == 0) or last:
            bar.write(f"epoch {epoch} step {step}: loss {loss_value:.4f}, samples → {sample_grid()}")
        train_seconds += time.perf_counter() - step_start  # training and grids; not the evaluation below
        if probe is not None and ((end_of_epoch and epoch % cfg["EVAL_EVERY"] == 0) or last):
            bar.write(f"epoch {epoch} step {step}: joint prompt accuracy {evaluate():.3f} "
                      f"after {train_seconds / 60:.1f} min of training")
        if (end_of_epoch and epoch % cfg["CHECKPOINT_EVERY"] == 0) or last:
            save_checkpoint(loss_value)
    bar.close()
    writer.close()
    print(f"done: {step} steps, final loss {loss_value:.4f}; run folder {run_dir}")
    return run_dir


def refuse_changed_architecture(state, unet_args, text_args, diffusion_args):
    changed = [f"{name}: checkpoint {state[name]} vs now {now}" for name, now in
               (("unet_args", unet_args), ("text_args", text_args), ("diffusion_args", diffusion_args))
               if state[name] != now]
    if changed:
        sys.exit("cannot resume: the model differs from the checkpoint's\n  " + "\n  ".join(changed) +
                 "\nStart a new run, or restore the checkpoint's values (see its config in run.json)")


def newest_run(runs_dir):
    paths = ckpts.all_checkpoints(runs_dir)
    return os.path.dirname(os.path.dirname(paths[0])) if paths else None


def log_provenance(writer, cfg, prov):
    adr = prov.get("adr") or {}
    text = "\n".join(f"    {k} = {v!r}" for k, v in cfg.items())
    writer.add_text("provenance", f"ADR {adr.get('number')}: {adr.get('title')}  \ncommit {prov.get('git_commit')} "
                    f"(dirty: {prov.get('git_dirty')})  \noverrides: {prov.get('overrides')}  \n"
                    f"exploratory: {prov.get('exploratory')}\n\n{text}", 0)
    hparams = {k: (v if isinstance(v, (int, float, str, bool)) else repr(v)) for k, v in cfg.items()}
    writer.add_hparams(hparams, {"hparam/final_loss": float("nan")}, run_name=".")


if __name__ == "__main__":
    main()
