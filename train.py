"""Train the text-conditional DDPM: `make train` (or `python train.py [--set KEY=VALUE ...] [--resume]`).

Reads top to bottom: config → decisions check → seed/device → data → text encoder → UNet → diffusion →
optimizer/EMA → run folder and resume → loop (lr, batch, caption dropout, loss, backward, clip, step, EMA, log,
periodic sample grid, probe evaluation and checkpoint). A run lives in runs/<name>/: TensorBoard events,
samples/, checkpoints/, run.json. What a checkpoint holds, and how resume restores it, is ddpm/run/state.py.
Under `torchrun --nproc-per-node N train.py` (`make train NPROC=N`) the same loop runs data-parallel (ddpm/distributed,
ADR 0017): BATCH_SIZE stays the global batch, each rank trains on its slice, rank 0 alone writes files.
"""

import argparse
import copy
import datetime
import os
import sys
import time

import torch
from tqdm import tqdm

from ddpm.cli import command_line
from ddpm.data.load import DataError, load_dataset
from ddpm.data.shapes import grid_prompts
from ddpm.decisions import provenance
from ddpm.decisions.replay import replay
from ddpm.distributed import ddp
from ddpm.files import read_json
from ddpm.run.finetune import FinetuneError, init_from, parse_parts, select_trainable
from ddpm.measure.evaluate import quick_eval
from ddpm.measure.caption_probe import training_probe
from ddpm.model.diffusion import GaussianDiffusion, make_noise
from ddpm.model.ema import ema_update
from ddpm.model.text import build_text_encoder, cache_fits, encode_in_batches, tokenizer_for
from ddpm.model.unet import UNet
from ddpm.run import checkpoint as ckpts
from ddpm.run import optim
from ddpm.run import settings
from ddpm.run.folder import (RunFolderError, check_run_name, find_resume, last_good, log_provenance, open_run_folder, record_resume,
                             save_grid, update_record)
from ddpm.run.pipeline import CompiledOrEager, Pipeline, autocast, describe_hardware, memory_format, resolve_precision
from ddpm.run.state import RESUMABLE, TrainState, resumed_config

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_BAD_STEPS = 5  # consecutive non-finite steps before the run stops (the last good checkpoint stays)
LOG_EVERY = 25  # optimizer steps between TensorBoard scalars and progress-bar updates
DIST_TIMEOUT = datetime.timedelta(minutes=10)  # a collective waiting longer for a dead or hung rank ends the run


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value for this run")
    p.add_argument("--run", "--run-name", dest="run", default=None,
                   help="run name (default: the date and time); under torchrun, spell it --run-name")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN",
                   help="continue a run from its newest valid checkpoint (default: the newest run); it keeps its own "
                        "config, and --set may change only what a resume may (EPOCHS, monitoring, previews, speed)")
    p.add_argument("--runs-dir", default=os.path.join(HERE, "runs"))
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps (smoke tests)")
    p.add_argument("--exploratory", action="store_true",
                   help="train even though config.py differs from the accepted decisions; the run is marked exploratory")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--init-from", metavar="PATH", help="start a new run (step 0, fresh optimizer) from the EMA weights "
                   "of a checkpoint or an exported .safetensors model; the architecture must match")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="a label recorded in run.json's provenance (a sweep stamps its name and trial this way)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of this process (default: torch's, one per core); make sweep ARGS=\"--jobs N\" "
                        "gives each of its N runs at a time an equal share of the cores")
    args = p.parse_args(command_line(argv))
    if args.max_steps is not None and args.max_steps < 1:
        bad_input(f"--max-steps {args.max_steps}: must be ≥ 1 (or left out to train EPOCHS epochs)")
    if args.threads is not None and args.threads < 1:
        bad_input(f"--threads {args.threads}: must be ≥ 1 (or left out for one per core)")
    return args


def bad_input(message):
    """Stop with one line and exit code 2: the input was wrong, nothing was written."""
    print(f"train.py: {message}", file=sys.stderr)
    sys.exit(2)


def read_config():
    """config.py's constants as a dict; a syntax or runtime error in it is one line naming the file and line."""
    try:
        import config
    except SyntaxError as err:
        bad_input(f"{err.filename or 'config.py'}:{err.lineno}: syntax error: {err.msg}; fix that line")
    except Exception as err:  # noqa: BLE001 - any error while executing config.py is the user's to fix
        tb = err.__traceback__
        while tb.tb_next is not None:
            tb = tb.tb_next
        bad_input(f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}: {type(err).__name__}: {err}; fix config.py")
    return settings.config_from_module(config)


def validated(cfg: dict, overrides: dict) -> dict:
    """``settings.validate``, with each key's origin (its ADR, or --set) named in the error."""
    try:
        origin = {k: f"set by ADR {n:04d}" for k, n in replay(os.path.join(HERE, "decisions"))[1].items()}
    except Exception:  # noqa: BLE001 - a broken ADR must not hide the config error itself
        origin = {}
    origin.update({k: "from --set" for k in overrides})
    try:
        return settings.validate(cfg, origin=origin)
    except ValueError as err:
        bad_input(str(err))


def check_decisions(config_file_values: dict, overrides: dict, exploratory: bool) -> dict:
    """Provenance of this run; refuses a config.py that the accepted decisions do not cover."""
    prov = provenance.collect(config_file_values, overrides, repo_root=HERE,
                              decisions_dir=os.path.join(HERE, "decisions"), config_path=os.path.join(HERE, "config.py"))
    if prov["decision_errors"] and not exploratory:
        bad_input("config.py does not match the accepted decisions:\n  " + "\n  ".join(prov["decision_errors"]) +
                  "\nWrite an ADR (make adr TITLE=\"...\"), or run anyway with: make train ARGS=--exploratory")
    prov["exploratory"] = bool(prov["decision_errors"] or overrides or exploratory)
    return prov


def parse_tags(items: list) -> dict:
    tags = dict(item.partition("=")[::2] for item in items)
    if any(not key for key in tags) or any("=" not in item for item in items):
        bad_input(f"--tag {items}: expected KEY=VALUE, e.g. --tag sweep=lr")
    return tags


def configure(args) -> tuple:
    """(config, provenance, run folder, resume) where resume is None or (checkpoint path, checkpoint, changes).

    A new run takes config.py with the --set overrides, checked against the accepted decisions. A resumed run
    keeps its own config; --set may change only ``RESUMABLE`` keys there, and is refused for the rest.
    """
    config_file_values = read_config()
    try:
        overrides = settings.parse_overrides(args.set)
        if args.resume is None:
            name = args.run if args.run is not None else datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            run_dir = os.path.join(args.runs_dir, check_run_name(name))
            if os.path.exists(os.path.join(run_dir, "checkpoints")):
                raise ValueError(f"run {run_dir} exists already: pick another --run name, or continue it with --resume")
            cfg = validated({**config_file_values, **overrides}, overrides)
            prov = check_decisions(config_file_values, overrides, args.exploratory)
            return cfg, {**prov, "tags": parse_tags(args.tag)} if args.tag else prov, run_dir, None
        run_dir, ckpt_path, ckpt = find_resume(args.runs_dir, args.resume)
    except (ValueError, RunFolderError) as err:
        bad_input(str(err))
    cfg, changes, refused, ignored = resumed_config(ckpt["config"], config_file_values, overrides)
    if refused:
        bad_input(f"cannot resume {run_dir} with a different " + ", ".join(refused) + ":\n  " +
                  "\n  ".join(f"{k}: run {old!r}, --set {new!r}" for k, (old, new) in refused.items()) +
                  "\nThese make the run what it is; start a new run for them (make train ARGS=\"--set ...\"). "
                  "A resume may change: " + ", ".join(RESUMABLE))
    if ignored:
        print(f"note: config.py now differs from this run in {', '.join(ignored)}; the resumed run keeps its own values")
    return validated(cfg, changes), ckpt["provenance"], run_dir, (ckpt_path, ckpt, changes)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # before any work: it also sets OpenMP's, which compiled kernels use

    # ---- config: read once, override, validate (a resumed run keeps its own) --------------------------
    cfg, prov, run_dir, resume = configure(args)

    # ---- seed and device ----------------------------------------------------------------------------
    try:
        world = ddp.init(args.device, timeout=DIST_TIMEOUT)  # a world of one without torchrun
        world.local_batch(cfg["BATCH_SIZE"])
    except ValueError as err:
        bad_input(str(err))
    run_dir = world.broadcast(run_dir)  # rank 0's name (the default is the time, which the ranks may read apart)
    device = world.device
    torch.manual_seed(cfg["SEED"])  # the same initial weights on every rank
    gen = torch.Generator().manual_seed(cfg["SEED"])  # the epoch permutation (on CPU), the same on every rank
    draws = torch.Generator(device).manual_seed(cfg["SEED"])  # the global batch's timesteps, noise, caption dropout
    precision = prov["precision"] = resolve_precision(cfg["PRECISION"], device)  # "auto": bf16 where native (ADR 0035)
    prov["hardware"] = describe_hardware(device)  # img/s means little without it (`make runs` shows both)
    if world.main and cfg["PRECISION"] == "auto":
        print(f"precision: {precision} (PRECISION = \"auto\": bf16 is {'' if precision == 'bf16' else 'not '}"
              f"native on this {device.type})")

    # ---- data: images in [-1, 1], captions tokenised once --------------------------------------------
    try:
        data = load_dataset(**settings.data_args(cfg), cache_dir=os.path.join(args.runs_dir, ".data-cache"),
                            log=print if world.main else (lambda *a, **k: None))
    except DataError as err:
        bad_input(str(err))
    prov["data"] = data.info  # what this run was trained on, in run.json and every checkpoint
    images = data.images.to(device)  # images[idx]: (B, 3, H, W) in [-1, 1]; shapes in memory, real sets memory-mapped
    unique = sorted(set(data.captions)) + [""]  # the last entry is the null prompt of guidance
    position = {c: i for i, c in enumerate(unique)}
    caption_index = torch.tensor([position[c] for c in data.captions], device=device)  # (N,) row of each caption
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
    unet_step = CompiledOrEager(world.wrap(unet), enabled=cfg["COMPILE"], warn=tqdm.write)  # training forward (ADR 0013)
    encode = text_encoder if text_encoder.frozen else world.wrap(text_encoder)  # the text forward (DDP when trained)
    diffusion_args = settings.diffusion_args(cfg)
    diffusion = GaussianDiffusion(**diffusion_args).to(device)

    # ---- optimizer and EMA ----------------------------------------------------------------------------
    unet_trainable, unet_share, share_text = select_trainable(unet, parse_parts(cfg["TRAIN_UNET_PARTS"]))
    if world.main:
        print(f"training {share_text}; text encoder: {'frozen' if text_encoder.frozen else 'trained'}")
    trainable = unet_trainable + ([] if text_encoder.frozen else list(text_encoder.parameters()))
    text_lr = cfg["TEXT_LEARNING_RATE"] or cfg["LEARNING_RATE"]  # 0 = the UNet's (ADR 0027)
    groups = optim.param_groups([(unet_trainable, cfg["LEARNING_RATE"]),
                                 ([] if text_encoder.frozen else text_encoder.parameters(), text_lr)])
    try:
        optimizer = optim.build_optimizer(cfg["OPTIMIZER"], groups, betas=cfg["ADAM_BETAS"], eps=cfg["ADAM_EPS"],
                                          weight_decay=cfg["WEIGHT_DECAY"])
    except optim.OptimizerUnavailable as err:
        bad_input(str(err))
    ema_text = text_encoder if text_encoder.frozen else copy.deepcopy(text_encoder).eval().requires_grad_(False)
    state = TrainState(unet=unet, ema_unet=copy.deepcopy(unet).eval().requires_grad_(False), text_encoder=text_encoder,
                       ema_text=ema_text, optimizer=optimizer, generator=gen, draws=draws)
    if world.rank:
        torch.manual_seed(ddp.seed_for(cfg["SEED"], world.rank))  # each rank's own dropout masks
    if args.init_from:  # a fine-tuning run: the base's EMA weights, this run's optimizer and step 0
        try:
            if args.resume:
                raise FinetuneError("--init-from starts a new run; continue a fine-tuning run with --resume alone")
            prov["base"] = init_from(args.init_from, unet=unet, ema_unet=state.ema_unet, text_encoder=text_encoder,
                                     ema_text=ema_text, unet_args=unet_args, text_args=text_args,
                                     diffusion_args=diffusion_args)
        except FinetuneError as err:
            bad_input(str(err))
        if world.main:
            print(f"fine-tuning from {args.init_from} (run {prov['base']['run']}, step {prov['base']['step']})")
    sampling = dict(guidance_scale=cfg["GUIDANCE_SCALE"], num_steps=cfg["NUM_INFERENCE_STEPS"], sampler=cfg["SAMPLER"],
                    eta=cfg["DDIM_ETA"], clip_x0=cfg["CLIP_DENOISED"], precision=cfg["PRECISION"],
                    channels_last=cfg["CHANNELS_LAST"])
    spec = dict(unet_args=unet_args, text_args=text_args, diffusion_args=diffusion_args, sampling=sampling,
                config=cfg, provenance=prov)

    # ---- resume, and the run folder ---------------------------------------------------------------------
    n, bs = len(images), cfg["BATCH_SIZE"]
    steps_per_epoch = n // bs  # the remainder of each shuffled epoch is dropped
    total = cfg["EPOCHS"] * steps_per_epoch if args.max_steps is None else min(args.max_steps, cfg["EPOCHS"] * steps_per_epoch)
    if resume:
        ckpt_path, ckpt, changes = resume
        refuse_changed_architecture(ckpt, spec)
        state.restore(ckpt)
        state.perm = None if state.perm is None else state.perm.to(device)
        if world.rank:  # rank 0's dropout stream is the one saved; the others start afresh (DROPOUT = 0 by default)
            torch.manual_seed(ddp.seed_for(cfg["SEED"], world.rank, state.step))
        adr, (commit, dirty) = prov.get("adr") or {}, provenance.git_state(HERE)
        if state.step >= total:
            print(f"run {run_dir} is finished: {state.step} of {total} steps done; nothing to do. To train on, resume "
                  f"with more epochs: make train ARGS=\"--resume {os.path.basename(run_dir)} --set EPOCHS=...\"")
            return run_dir
        if world.main:
            print(f"resuming {ckpt_path} (step {state.step}, epoch {state.epoch}), trained under ADR {adr.get('number')}: "
                  f"{adr.get('title')}")
        prov = spec["provenance"] = record_resume(prov, step=state.step, changes=changes, commit=commit, dirty=dirty)
    record = read_json(os.path.join(run_dir, "run.json")) if resume else {}
    record.update(name=os.path.basename(run_dir), config=cfg, provenance=prov, step=state.step, epoch=state.epoch,
                  unet_trained_share=round(unet_share, 4), unet_trained=share_text)
    record.setdefault("started", datetime.datetime.now().isoformat(timespec="seconds"))
    record.setdefault("final_loss", None)
    try:
        writer = open_run_folder(run_dir, record, purge_step=state.step + 1 if resume else None) if world.main \
            else ddp.NullWriter()  # rank 0 alone writes
    except RunFolderError as err:
        bad_input(str(err))
    if not resume:
        log_provenance(writer, cfg, prov)

    preview = Pipeline(unet=state.ema_unet, text_encoder=state.ema_text, tokenizer=tokenizer_for(text_args),
                       diffusion=diffusion, image_size=cfg["IMAGE_SIZE"], precision=cfg["PRECISION"],
                       channels_last=cfg["CHANNELS_LAST"], config=cfg, device=device)
    if world.main:
        data.write_report(run_dir)  # the files skipped as unreadable, if any
    n_grid = cfg["SAMPLE_GRID_SIZE"]
    prompts = grid_prompts(n_grid) if cfg["DATASET"] == "shapes" else data.grid_captions(n_grid)
    probe = training_probe(data, cache_dir=os.path.join(args.runs_dir, ".probe"), image_size=cfg["IMAGE_SIZE"],
                           log=print) if (cfg["EVAL_EVERY"] or cfg["EVAL_EVERY_STEPS"]) and world.main \
        else None  # None: free-text captions
    curve = record.get("quality_curve", [])  # (minutes of training, step, joint accuracy)
    train_seconds = curve[-1]["minutes"] * 60 if curve else 0.0

    # ---- the loop -------------------------------------------------------------------------------------
    bar = tqdm(total=total, initial=state.step, unit="step", dynamic_ncols=True, disable=None if world.main else True)
    sums = torch.zeros(10, device=device)  # since the last log: loss, steps, loss and count per t-quartile (4 + 4)
    bad_steps, loss_value, last_grad_norm = 0, float("nan"), float("nan")
    tick, tick_step = time.perf_counter(), state.step
    unet.train()
    text_encoder.train()
    if cfg["COMPILE"] and world.main:
        tqdm.write("compiling the UNet: the first step takes up to a minute or two (cached afterwards); COMPILE in config.py")
    while state.step < total:
        if state.perm is None or state.batch_in_epoch >= steps_per_epoch:
            state.perm, state.batch_in_epoch = torch.randperm(n, generator=gen).to(device), 0
        idx = world.shard(state.perm[state.batch_in_epoch * bs : (state.batch_in_epoch + 1) * bs])  # this rank's slice
        lr_factor = optim.lr_factor(state.step, warmup_steps=cfg["WARMUP_STEPS"], schedule=cfg["LR_SCHEDULE"],
                                    total_steps=cfg["EPOCHS"] * steps_per_epoch, min_ratio=cfg["LR_MIN_RATIO"])
        optim.set_lr(optimizer, lr_factor)
        lr = cfg["LEARNING_RATE"] * lr_factor  # the UNet's, for the logs

        step_start = time.perf_counter()
        x0 = images[idx].contiguous(memory_format=fmt)
        drop, t, noise = world.shard(  # drawn on the device for the GLOBAL batch, so every world size sees the same
            torch.rand(bs, generator=draws, device=device) < cfg["CAPTION_DROPOUT"],  # classifier-free guidance
            torch.randint(0, cfg["TIMESTEPS"], (bs,), generator=draws, device=device),
            make_noise((bs, *x0.shape[1:]), cfg["OFFSET_NOISE"], draws, device=device))  # offset noise (ADR 0028)
        cap = torch.where(drop, null_index, caption_index[idx])

        def loss_of(part):  # one micro-batch: (weighted mean loss, unweighted per-sample losses for the logs)
            with autocast(precision, device):
                with torch.set_grad_enabled(not text_encoder.frozen):  # frozen and uncached: per batch, no graph
                    context = cached[cap[part]] if cached is not None else encode(tokens[cap[part]])
                part_losses = diffusion.loss_per_sample(unet_step, x0[part], t[part], noise[part], context,
                                                        token_mask[cap[part]])  # (b,)
            return (diffusion.min_snr_weights(t[part], cfg["MIN_SNR_GAMMA"]) * part_losses).mean(), part_losses

        # A non-finite loss or gradient norm on any rank skips the update on every rank: no step, no EMA, nothing
        # checkpointed from it. Backward runs regardless: DDP's gradient all-reduce needs every rank, and carries a
        # NaN to all of them; the flag's all-reduce is the one host read per step (ADR 0017).
        optimizer.zero_grad(set_to_none=True)
        loss, losses = optim.accumulate(loss_of, len(idx), cfg["GRAD_ACCUM_STEPS"])  # (ADR 0026)
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg["GRAD_CLIP"])
        state.batch_in_epoch += 1
        if not world.all_true(torch.isfinite(loss) & torch.isfinite(grad_norm)):
            optimizer.zero_grad(set_to_none=True)
            bad_steps += 1
            writer.add_scalar("train/skipped_nonfinite", bad_steps, state.step + 1)  # at the step it was to be
            what = "loss" if not torch.isfinite(loss) else "gradient norm"  # this rank's view
            tqdm.write(f"step {state.step}: non-finite {what}, update skipped ({bad_steps} in a row)")
            if bad_steps >= MAX_BAD_STEPS:
                writer.close()
                sys.exit(f"train.py: {what} was not finite for {bad_steps} steps in a row at step {state.step}; "
                         f"stopping. {last_good(run_dir)} Lower LEARNING_RATE (an ADR) and start again, or resume.")
        else:
            bad_steps = 0
            optimizer.step()
            ema_update(state.ema_unet, unet, decay=cfg["EMA_DECAY"], step=state.step)
            if not text_encoder.frozen:
                ema_update(ema_text, text_encoder, decay=cfg["EMA_DECAY"], step=state.step)
            state.step += 1
            bar.update(1)
            last_grad_norm = grad_norm.detach()  # the same on every rank (averaged gradients); read at the log
            q = (t * 4 // cfg["TIMESTEPS"]).clamp(max=3)  # on the device: no host read until the log below
            sums[0] += loss.detach().float()
            sums[1] += 1
            sums[2:6].index_add_(0, q, losses.detach().float())
            sums[6:].index_add_(0, q, torch.ones_like(losses, dtype=torch.float))

        # Epoch ends are counted in batches drawn, so a skipped last batch still ends its epoch.
        end_of_epoch = state.batch_in_epoch >= steps_per_epoch
        if end_of_epoch:
            state.epoch += 1
        last = state.step >= total
        save_now = (end_of_epoch and state.epoch % cfg["CHECKPOINT_EVERY"] == 0) or last
        # A logging window never spans a checkpoint, so a resumed run logs exactly what an uninterrupted one does.
        if state.step > tick_step and (state.step % LOG_EVERY == 0 or save_now):
            totals = world.sum_(sums.clone()).tolist()  # over ranks: the window's one host read
            loss_value, last_grad_norm = totals[0] / totals[1], float(last_grad_norm)  # the window's mean loss
            now = time.perf_counter()
            img_s = (state.step - tick_step) * bs / max(now - tick, 1e-9)
            tick, tick_step = now, state.step
            for key, value in dict(loss=loss_value, lr=lr, grad_norm=last_grad_norm, images_per_s=img_s).items():
                writer.add_scalar(f"train/{key}", value, state.step)
            for i in range(4):
                if totals[6 + i] > 0:
                    writer.add_scalar(f"loss_by_t/q{i + 1}", totals[2 + i] / totals[6 + i], state.step)
            sums.zero_()
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.1e}", img_s=f"{img_s:.0f}")
        if world.main and ((end_of_epoch and state.epoch % cfg["GENERATE_SAMPLES_EVERY"] == 0) or last):
            grid = preview.generate(prompts, guidance_scale=cfg["GUIDANCE_SCALE"], num_steps=cfg["NUM_INFERENCE_STEPS"],
                                    sampler=cfg["SAMPLER"], eta=cfg["DDIM_ETA"], clip_x0=cfg["CLIP_DENOISED"], seed=cfg["SEED"])
            path = save_grid(grid, prompts, writer, run_dir, epoch=state.epoch, step=state.step)
            bar.write(f"epoch {state.epoch} step {state.step}: loss {loss_value:.4f}, samples → {path}")
        train_seconds += time.perf_counter() - step_start  # training and grids; not the evaluation below
        if world.main and probe is not None and (eval_due(cfg, state, end_of_epoch, stepped=bad_steps == 0) or last):
            scores = evaluate(preview, probe, cfg, writer, state.step)
            accuracy = scores["joint_accuracy"]
            curve.append({"minutes": round(train_seconds / 60, 2), "step": state.step, "joint_accuracy": accuracy,
                          **{k: scores[k] for k in ("prompt_prob", "joint_prob") if scores.get(k) is not None}})
            update_record(run_dir, quality_curve=curve)
            bar.write(f"epoch {state.epoch} step {state.step}: joint prompt accuracy {accuracy:.3f} "
                      f"after {train_seconds / 60:.1f} min of training")
        if save_now and world.main:
            save_checkpoint(state, spec, run_dir, loss=loss_value, keep=cfg["KEEP_CHECKPOINTS"], writer=writer)
    bar.close()
    writer.close()
    ddp.teardown(world)
    if world.main:
        print(f"done: {state.step} steps, final loss {loss_value:.4f}; run folder {run_dir}")
    return run_dir


# ---- the pieces the loop calls ----------------------------------------------------------------------------
def eval_due(cfg, state, end_of_epoch, *, stepped) -> bool:
    """A probe evaluation every EVAL_EVERY_STEPS optimizer steps when set (ADR 0023), else every EVAL_EVERY epochs."""
    if cfg["EVAL_EVERY_STEPS"]:
        return stepped and state.step % cfg["EVAL_EVERY_STEPS"] == 0
    return bool(cfg["EVAL_EVERY"]) and end_of_epoch and state.epoch % cfg["EVAL_EVERY"] == 0


def evaluate(preview, probe, cfg, writer, step) -> dict:
    """The cheap probe evaluation (ddpm/measure/evaluate.py): one point of the time-to-quality curve."""
    scores = quick_eval(preview, probe, guidance_scale=cfg["PROBE_GUIDANCE_SCALE"], eta=cfg["PROBE_DDIM_ETA"],
                        num_steps=cfg["NUM_INFERENCE_STEPS"], sampler=cfg["SAMPLER"], seed=cfg["SEED"])
    for key, value in scores.items():
        if value is not None:
            writer.add_scalar(f"eval/{key}", value, step)
    return scores


def save_checkpoint(state, spec, run_dir, *, loss, keep, writer):
    """Write the checkpoint atomically, prune old ones, note the step in run.json; a failed save stops the run
    with one line that says the previous checkpoint is intact."""
    path = os.path.join(run_dir, "checkpoints", ckpts.checkpoint_name(state.epoch, state.step))
    writer.flush()  # the events up to this step are as durable as the checkpoint that a resume starts from
    try:
        ckpts.save_atomic(state.to_checkpoint(spec, loss=loss), path)
    except (ckpts.CheckpointError, OSError) as err:
        writer.close()
        sys.exit(f"train.py: {err}. {last_good(run_dir)} Free space (or fix "
                 f"the folder) and resume: make train ARGS=\"--resume {os.path.basename(run_dir)}\"")
    ckpts.prune(run_dir, keep)
    update_record(run_dir, step=state.step, epoch=state.epoch, final_loss=loss)


def refuse_changed_architecture(ckpt, spec):
    changed = [f"{name}: checkpoint {ckpt[name]} vs now {spec[name]}" for name in ("unet_args", "text_args", "diffusion_args")
               if ckpt[name] != spec[name]]
    if changed:
        bad_input("cannot resume: the model differs from the checkpoint's\n  " + "\n  ".join(changed) +
                  "\nStart a new run, or restore the checkpoint's values (see its config in run.json)")


if __name__ == "__main__":
    main()
