"""Building a training run from its validated config: the world and its seeds, the data, the text encoder, the
UNet and the diffusion, the optimizer and the EMA copies, a fine-tuning base or a resumed checkpoint, the run
folder and the preview pipeline. ``build`` returns one ``Run`` holding all of it, which train.py's loop steps.

Everything a user can get wrong here (data, an unavailable optimizer, a base of another architecture, a resumed
model that differs) raises ``RunError`` with a one-line message; train.py turns it into exit code 2. The order
of the random draws is the run's identity (ADR 0044: runs are deterministic): the global RNG seeds the text
encoder's and then the UNet's initial weights, in that order, and nothing else draws from it before the loop.
"""

import copy
import datetime
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ddpm.data.load import DataError, load_dataset
from ddpm.data.shapes import grid_prompts
from ddpm.decisions import provenance
from ddpm.distributed import ddp
from ddpm.files import read_json
from ddpm.model.diffusion import make_diffusion
from ddpm.model.text import build_text_encoder, cache_fits, encode_in_batches, tokenizer_for
from ddpm.model.unet import UNet
from ddpm.run import optim, settings
from ddpm.run.checkpoint import TrainState, architecture_diff
from ddpm.run.finetune import FinetuneError, init_from, parse_parts, select_trainable
from ddpm.run.folder import RunFolderError, last_good, log_provenance, open_run_folder, record_resume
from ddpm.run.hardware import CompiledOrEager, describe_hardware, memory_format, resolve_precision
from ddpm.run.pipeline import Pipeline
from ddpm.run.sampling import Sampling

DIST_TIMEOUT = datetime.timedelta(minutes=10)  # a collective waiting longer for a dead or hung rank ends the run


class RunError(ValueError):
    """Bad input found while building the run; the message is one line naming it and the way out."""


@dataclass
class Run:
    """One training run, built: what the loop reads (config, world, data, modules, optimizer, state) and writes."""

    cfg: dict
    world: ddp.World
    run_dir: str
    precision: str
    images: Any  # images[idx] → (B, 3, H, W) in [-1, 1] on the device
    caption_index: torch.Tensor  # (N,) row of each image's caption in ``tokens``
    null_index: int  # the row of the empty prompt (classifier-free guidance)
    tokens: torch.Tensor  # (captions + 1, L) token ids
    token_mask: torch.Tensor  # (captions + 1, L)
    cached: Optional[torch.Tensor]  # frozen encoder: every caption's embedding, else None
    text_encoder: torch.nn.Module
    encode: Any  # the text forward (under DDP when trained)
    unet: torch.nn.Module
    unet_step: CompiledOrEager  # the training forward (ADR 0013)
    diffusion: Any  # GaussianDiffusion, or FlowMatching (OBJECTIVE = "flow")
    trainable: list
    optimizer: torch.optim.Optimizer
    state: TrainState
    spec: dict  # what a checkpoint describes itself with (checkpoint.SPEC_KEYS)
    steps_per_epoch: int
    schedule_steps: int  # the run's length, where the learning rate's schedule ends: TRAIN_STEPS, else EPOCHS epochs
    total: int  # optimizer steps this process trains to (schedule_steps, or fewer with --max-steps)
    writer: Any = None
    preview: Optional[Pipeline] = None
    record: dict = field(default_factory=dict)  # run.json as it was at the start
    data: Any = None  # the Loaded dataset (its report, its grid captions)
    memory_format: Any = torch.contiguous_format
    heartbeat: Optional[ddp.Heartbeat] = None  # several processes: each watches the others (ddpm.distributed.ddp)

    @property
    def device(self) -> torch.device:
        return self.world.device

    @property
    def finished(self) -> bool:
        return self.state.step >= self.total


def build(
    cfg: dict,
    prov: dict,
    run_dir: str,
    *,
    runs_dir: str,
    device: str,
    max_steps: Optional[int],
    resume: Optional[tuple],
    init_path: Optional[str],
    log=print,
) -> Run:
    """The run of ``cfg``; ``resume`` is None or (checkpoint path, checkpoint, changes); ``init_path`` a base."""
    try:
        world = ddp.init(device, timeout=DIST_TIMEOUT)  # a world of one without torchrun
        world.local_batch(cfg["BATCH_SIZE"])
    except ValueError as err:
        raise RunError(str(err)) from None
    run_dir = world.broadcast(run_dir)  # rank 0's name (the default is the time, which the ranks may read apart)
    heartbeat = (
        ddp.Heartbeat(
            world,
            advice=lambda: (
                f"{last_good(run_dir)} Resume: make train NPROC={world.size} "
                f'ARGS="--resume {os.path.basename(run_dir)}"'
            ),
        )
        if world.distributed
        else None
    )
    say = log if world.main else (lambda *a, **k: None)
    torch.manual_seed(cfg["SEED"])  # the same initial weights on every rank
    gen = torch.Generator().manual_seed(cfg["SEED"])  # the epoch permutation (on CPU), the same on every rank
    draws = torch.Generator(world.device).manual_seed(cfg["SEED"])  # the global batch's timesteps, noise, dropout
    precision = prov["precision"] = resolve_precision(cfg["PRECISION"], world.device)  # bf16 where native (ADR 0035)
    prov["hardware"] = describe_hardware(world.device)  # img/s means little without it (`make runs` shows both)
    if cfg["PRECISION"] == "auto":
        say(
            f'precision: {precision} (PRECISION = "auto": bf16 is {"" if precision == "bf16" else "not "}'
            f"native on this {world.device.type})"
        )

    try:  # images in [-1, 1], captions tokenised once
        data = load_dataset(**settings.data_args(cfg), cache_dir=os.path.join(runs_dir, ".data-cache"), log=say)
    except DataError as err:
        raise RunError(str(err)) from None
    prov["data"] = data.info  # what this run was trained on, in run.json and every checkpoint
    unique = sorted(set(data.captions)) + [""]  # the last entry is the null prompt of guidance
    position = {c: i for i, c in enumerate(unique)}

    text_args = settings.text_args(cfg)
    tokens, token_mask = tokenizer_for(text_args)(unique)
    text_args["vocab"] = tuple(sorted(set(tokens[token_mask].tolist())))  # BPE ids of the training captions
    text_encoder = build_text_encoder(**text_args).to(world.device)
    tokens, token_mask = tokens.to(world.device), token_mask.to(world.device)
    fits = cache_fits(len(unique), tokens.shape[1], text_encoder.dim, cfg["TEXT_CACHE_MB"])  # else per batch (ADR 0020)
    cached = encode_in_batches(text_encoder, tokens) if text_encoder.frozen and fits else None  # frozen: encode once

    unet_args = settings.unet_args(cfg, context_dim=text_encoder.dim)
    fmt = memory_format(cfg["CHANNELS_LAST"])
    unet = UNet(**unet_args).to(world.device, memory_format=fmt)
    diffusion_args = settings.diffusion_args(cfg)
    unet_trainable, unet_share, share_text = select_trainable(unet, parse_parts(cfg["TRAIN_UNET_PARTS"]))
    say(f"training {share_text}; text encoder: {'frozen' if text_encoder.frozen else 'trained'}")
    text_lr = cfg["TEXT_LEARNING_RATE"] or cfg["LEARNING_RATE"]  # 0 = the UNet's (ADR 0027)
    groups = optim.param_groups(
        [(unet_trainable, cfg["LEARNING_RATE"]), ([] if text_encoder.frozen else text_encoder.parameters(), text_lr)]
    )
    try:
        optimizer = optim.build_optimizer(
            cfg["OPTIMIZER"], groups, betas=cfg["ADAM_BETAS"], eps=cfg["ADAM_EPS"], weight_decay=cfg["WEIGHT_DECAY"]
        )
    except optim.OptimizerUnavailable as err:
        raise RunError(str(err)) from None
    ema_text = text_encoder if text_encoder.frozen else copy.deepcopy(text_encoder).eval().requires_grad_(False)
    state = TrainState(
        unet=unet,
        ema_unet=copy.deepcopy(unet).eval().requires_grad_(False),
        text_encoder=text_encoder,
        ema_text=ema_text,
        optimizer=optimizer,
        generator=gen,
        draws=draws,
    )
    if world.rank:
        torch.manual_seed(ddp.seed_for(cfg["SEED"], world.rank))  # each rank's own dropout masks
    if init_path:  # a fine-tuning run: the base's EMA weights, this run's optimizer and step 0
        try:
            prov["base"] = init_from(
                init_path,
                unet=unet,
                ema_unet=state.ema_unet,
                text_encoder=text_encoder,
                ema_text=ema_text,
                unet_args=unet_args,
                text_args=text_args,
                diffusion_args=diffusion_args,
            )
        except FinetuneError as err:
            raise RunError(str(err)) from None
        say(f"fine-tuning from {init_path} (run {prov['base']['run']}, step {prov['base']['step']})")

    spec = dict(
        unet_args=unet_args,
        text_args=text_args,
        diffusion_args=diffusion_args,
        sampling=settings.sampling_args(cfg),
        config=cfg,
        provenance=prov,
    )
    steps_per_epoch = len(data.images) // cfg["BATCH_SIZE"]  # the remainder of each shuffled epoch is dropped
    schedule_steps = cfg["TRAIN_STEPS"] or cfg["EPOCHS"] * steps_per_epoch  # the run's length (ADR 0056)
    total = schedule_steps if max_steps is None else min(max_steps, schedule_steps)
    run = Run(
        cfg=cfg,
        world=world,
        run_dir=run_dir,
        precision=precision,
        images=data.images.to(world.device),
        caption_index=torch.tensor([position[c] for c in data.captions], device=world.device),
        null_index=len(unique) - 1,
        tokens=tokens,
        token_mask=token_mask,
        cached=cached,
        text_encoder=text_encoder,
        encode=text_encoder if text_encoder.frozen else world.wrap(text_encoder),
        unet=unet,
        unet_step=CompiledOrEager(world.wrap(unet), enabled=cfg["COMPILE"], warn=log),
        diffusion=make_diffusion(**diffusion_args).to(world.device),
        trainable=unet_trainable + ([] if text_encoder.frozen else list(text_encoder.parameters())),
        optimizer=optimizer,
        state=state,
        spec=spec,
        steps_per_epoch=steps_per_epoch,
        schedule_steps=schedule_steps,
        total=total,
        data=data,
        memory_format=fmt,
        heartbeat=heartbeat,
        record={"unet_trained_share": round(unet_share, 4), "unet_trained": share_text},
    )
    if resume:
        restore(run, resume, log=say)
    return run


def restore(run: Run, resume: tuple, *, log=print) -> None:
    """Put the checkpoint's state back into ``run`` (exact resume), or refuse one whose model differs."""
    ckpt_path, ckpt, changes = resume
    diffs = architecture_diff(ckpt, run.spec, names=("checkpoint", "now"))
    if diffs:
        raise RunError(
            "cannot resume: the model differs from the checkpoint's\n  "
            + "\n  ".join(diffs)
            + "\nStart a new run, or restore the checkpoint's values (see its config in run.json)"
        )
    state = run.state
    state.restore(ckpt)
    state.perm = None if state.perm is None else state.perm.to(run.device)
    if run.world.rank:  # rank 0's dropout stream is the one saved; the others start afresh (DROPOUT = 0 by default)
        torch.manual_seed(ddp.seed_for(run.cfg["SEED"], run.world.rank, state.step))
    prov = run.spec["provenance"]
    if run.finished:
        return
    adr = prov.get("adr") or {}
    log(
        f"resuming {ckpt_path} (step {state.step}, epoch {state.epoch}), trained under ADR {adr.get('number')}: "
        f"{adr.get('title')}"
    )
    commit, dirty = provenance.git_state(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    run.spec["provenance"] = record_resume(prov, step=state.step, changes=changes, commit=commit, dirty=dirty)


def open_folder(run: Run, *, resumed: bool, grid_size: int) -> list:
    """Write run.json and open TensorBoard (rank 0 alone writes); build the preview pipeline. Returns the grid's
    prompts. A folder that cannot be written raises RunError."""
    cfg, state = run.cfg, run.state
    record = read_json(os.path.join(run.run_dir, "run.json")) if resumed else {}
    record.update(
        name=os.path.basename(run.run_dir),
        config=cfg,
        provenance=run.spec["provenance"],
        step=state.step,
        epoch=state.epoch,
        **run.record,
    )
    # as TensorBoard's events past the checkpoint are purged: the probe points of steps about to be trained again
    record["quality_curve"] = [p for p in record.get("quality_curve", []) if p["step"] <= state.step]
    record.setdefault("started", datetime.datetime.now().isoformat(timespec="seconds"))
    record.setdefault("final_loss", None)
    run.record = record
    try:
        run.writer = (
            open_run_folder(run.run_dir, record, purge_step=state.step + 1 if resumed else None)
            if run.world.main
            else ddp.NullWriter()
        )  # rank 0 alone writes
    except RunFolderError as err:
        raise RunError(str(err)) from None
    if run.world.main and not resumed:
        log_provenance(run.writer, cfg, run.spec["provenance"])
    run.preview = Pipeline(
        unet=state.ema_unet,
        text_encoder=state.ema_text,
        tokenizer=tokenizer_for(run.spec["text_args"]),
        diffusion=run.diffusion,
        image_size=cfg["IMAGE_SIZE"],
        sampling=Sampling.from_config(cfg),
        precision=cfg["PRECISION"],
        channels_last=cfg["CHANNELS_LAST"],
        config=cfg,
        device=run.device,
    )
    if run.world.main:
        run.data.write_report(run.run_dir)  # the files skipped as unreadable, if any
    return grid_prompts(grid_size) if cfg["DATASET"] == "shapes" else run.data.grid_captions(grid_size)
