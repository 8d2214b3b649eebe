"""What a training run reports and keeps as it goes, each piece a call the loop makes when it is due: the logging
window (TensorBoard scalars and progress), the sample grids, the probe points of the time-to-quality curve, and
the checkpoints. Rank 0 alone writes (the others hold a ``NullWriter``).

Progress: in a terminal a tqdm bar; elsewhere (``make train > log``, nohup, CI) one line at least every
``ddpm.progress.EVERY_SECONDS`` with the step, loss, learning rate, images per second and the time left.

Faults stop the run with ``RunStopped`` (train.py prints its one line and exits 1), and nothing good is lost:
``MAX_BAD_STEPS`` non-finite steps in a row end it, naming the last good checkpoint; a checkpoint is written only
when the run has stepped since the last one, so skipped steps never add a checkpoint that would push an older
good one out of the ``KEEP_CHECKPOINTS`` kept; an unwritable run folder ends it naming the checkpoint to resume.
"""

import contextlib
import math
import os
import sys
import time

import torch
from tqdm import tqdm

from ddpm.measure.caption_probe import training_probe
from ddpm.measure.report import samples_sheet
from ddpm.measure.scoring import quick_eval
from ddpm.progress import EVERY_SECONDS
from ddpm.run import checkpoint as ckpts
from ddpm.run import folder as run_folder
from ddpm.run.folder import last_good, save_grid, update_record

MAX_BAD_STEPS = 5  # consecutive non-finite steps before the run stops (the last good checkpoint stays)
LOG_EVERY = 25  # optimizer steps between TensorBoard scalars and progress-bar updates


class RunStopped(RuntimeError):
    """The run cannot go on; the message is one line that says why and what is intact."""


def probe_for(run, runs_dir: str, *, log=print):
    """The in-training probe (shapes' attribute probe, a caption probe, or None), on rank 0 when evaluations are on.
    Trained (the first time) under a forked RNG, so that a run draws the same numbers whether it is cached or not."""
    cfg = run.cfg
    if not (cfg["EVAL_EVERY"] or cfg["EVAL_EVERY_STEPS"]) or not run.world.main:
        return None
    with torch.random.fork_rng(devices=[]):
        return training_probe(
            run.data, cache_dir=os.path.join(runs_dir, ".probe"), image_size=cfg["IMAGE_SIZE"], log=log
        )


def eval_due(cfg, state, end_of_epoch, *, stepped) -> bool:
    """A probe evaluation every EVAL_EVERY_STEPS optimizer steps when set (ADR 0023), else every EVAL_EVERY epochs."""
    if cfg["EVAL_EVERY_STEPS"]:
        return stepped and state.step % cfg["EVAL_EVERY_STEPS"] == 0
    return bool(cfg["EVAL_EVERY"]) and end_of_epoch and state.epoch % cfg["EVAL_EVERY"] == 0


def evaluate(preview, probe, cfg, writer, step) -> dict:
    """The cheap probe evaluation (ddpm/measure/scoring.py) at its fixed yardstick, DDIM at PROBE_NUM_STEPS steps,
    PROBE_GUIDANCE_SCALE and PROBE_DDIM_ETA (ADR 0046, 0047, 0059), not the samples' settings, so that steps to a
    target stay comparable when the samples' sampler moves; flow matching has no DDIM and probes with its own ODE
    sampler (SAMPLER). Its scores go to TensorBoard as eval/*."""
    scores = quick_eval(
        preview,
        probe,
        guidance_scale=cfg["PROBE_GUIDANCE_SCALE"],
        eta=cfg["PROBE_DDIM_ETA"],
        num_steps=cfg["PROBE_NUM_STEPS"],
        sampler=cfg["SAMPLER"] if cfg["OBJECTIVE"] == "flow" else "ddim",
        seed=cfg["SEED"],
    )
    for key, value in scores.items():
        if value is not None:
            writer.add_scalar(f"eval/{key}", value, step)
    return scores


class Monitor:
    def __init__(self, run, *, prompts: list, probe, terminal: bool = None):
        self.run, self.prompts, self.probe = run, prompts, probe
        self.main = run.world.main
        state = run.state
        self.sums = torch.zeros(10, device=run.device)  # the window: loss, steps, loss and count per t-quartile
        self.bad_steps, self.loss, self.grad_norm = 0, float("nan"), float("nan")
        self.tick, self.tick_step, self.said = time.perf_counter(), state.step, 0.0
        self.saved_step = state.step  # the step of the newest checkpoint (a new run: 0, nothing to save yet)
        self.curve = run.record.get("quality_curve", [])  # (minutes of training, step, accuracy, probability)
        self.train_seconds = self.curve[-1]["minutes"] * 60 if self.curve else 0.0
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self.bar = tqdm(
            total=run.total, initial=state.step, unit="step", dynamic_ncols=True, disable=not (self.main and terminal)
        )
        self.lines = self.main and not terminal  # progress as lines, off a terminal
        run.unet.train()
        run.text_encoder.train()
        if run.cfg["COMPILE"]:
            self.say(
                "compiling the UNet: the first step takes up to a minute or two (cached afterwards); COMPILE "
                "in config.py"
            )

    def say(self, text: str) -> None:
        if self.main:
            self.bar.write(text) if not self.bar.disable else print(text, flush=True)

    # ---- every step ---------------------------------------------------------------------------------------
    def count(self, result) -> None:
        """Add a step to the window; a skipped one is counted, logged, and ends the run after MAX_BAD_STEPS."""
        state = self.run.state
        if not result.stepped:
            self.bad_steps += 1
            self.run.writer.add_scalar("train/skipped_nonfinite", self.bad_steps, state.step + 1)  # where it was due
            self.say(f"step {state.step}: non-finite {result.what}, update skipped ({self.bad_steps} in a row)")
            if self.bad_steps >= MAX_BAD_STEPS:
                self.close()
                raise RunStopped(
                    f"{result.what} was not finite for {self.bad_steps} steps in a row at step {state.step}; "
                    f"stopping. {last_good(self.run.run_dir)} Resuming would repeat the same steps "
                    "(training is deterministic): start a new run with a lower LEARNING_RATE or GRAD_CLIP "
                    "(an ADR), or fine-tune from that checkpoint with --init-from"
                )
            return
        self.bad_steps = 0
        self.bar.update(1)
        self.grad_norm = result.grad_norm.detach()  # the same on every rank (averaged gradients); read at the log
        q = self.run.diffusion.quartile(result.t)  # on the device: no host read until the log
        self.sums[0] += result.loss.detach().float()
        self.sums[1] += 1
        self.sums[2:6].index_add_(0, q, result.losses.detach().float())
        self.sums[6:].index_add_(0, q, torch.ones_like(result.losses, dtype=torch.float))

    def add_time(self, started: float) -> None:
        """The training clock of the time-to-quality curve: steps and grids, not the probe evaluations."""
        self.train_seconds += time.perf_counter() - started

    # ---- when due ---------------------------------------------------------------------------------------------
    def log_due(self, save_now: bool) -> bool:
        """Every LOG_EVERY steps, and before each checkpoint: a window never spans one, so a resumed run logs
        exactly what an uninterrupted one does."""
        step = self.run.state.step
        return step > self.tick_step and (step % LOG_EVERY == 0 or save_now)

    def log(self, lr: float) -> None:
        run, state = self.run, self.run.state
        totals = run.world.sum_(self.sums.clone()).tolist()  # over ranks: the window's one host read
        self.loss, self.grad_norm = totals[0] / totals[1], float(self.grad_norm)  # the window's mean loss
        now = time.perf_counter()
        img_s = (state.step - self.tick_step) * run.cfg["BATCH_SIZE"] / max(now - self.tick, 1e-9)
        self.tick, self.tick_step = now, state.step
        for key, value in dict(loss=self.loss, lr=lr, grad_norm=self.grad_norm, images_per_s=img_s).items():
            run.writer.add_scalar(f"train/{key}", value, state.step)
        for i in range(4):
            if totals[6 + i] > 0:
                run.writer.add_scalar(f"loss_by_t/q{i + 1}", totals[2 + i] / totals[6 + i], state.step)
        self.sums.zero_()
        self.bar.set_postfix(loss=f"{self.loss:.4f}", lr=f"{lr:.1e}", img_s=f"{img_s:.0f}")
        if self.lines and (now - self.said >= EVERY_SECONDS or state.step >= run.total):
            self.said = now
            left = (run.total - state.step) * run.cfg["BATCH_SIZE"] / max(img_s, 1e-9) / 60
            print(
                f"step {state.step:,}/{run.total:,} ({state.step / run.total:.0%}) loss {self.loss:.4f} lr {lr:.1e} "
                f"{img_s:.0f} img/s, about {left:.0f} min of steps left",
                flush=True,
            )

    def grid_due(self, end_of_epoch: bool) -> bool:
        cfg, state = self.run.cfg, self.run.state
        return self.main and ((end_of_epoch and state.epoch % cfg["GENERATE_SAMPLES_EVERY"] == 0) or self.run.finished)

    def sample_grid(self) -> None:
        """The fixed prompts at the run's sampling settings: a PNG grid, the same with each tile's caption (in
        samples/captioned/), and TensorBoard."""
        run, state = self.run, self.run.state
        images = run.preview.generate(self.prompts, seed=run.cfg["SEED"])
        with self.writing("the sample grid"):
            path = save_grid(images, self.prompts, run.writer, run.run_dir, epoch=state.epoch, step=state.step)
            samples_sheet(
                images, self.prompts, 1, os.path.join(os.path.dirname(path), "captioned", os.path.basename(path))
            )
        self.say(f"epoch {state.epoch} step {state.step}: loss {self.loss:.4f}, samples → {path}")

    def probe_due(self, end_of_epoch: bool, stepped: bool) -> bool:
        if self.probe is None:
            return False
        return self.run.finished or eval_due(self.run.cfg, self.run.state, end_of_epoch, stepped=stepped)

    def probe_point(self) -> None:
        """One point of the time-to-quality curve, in TensorBoard and run.json."""
        run, step = self.run, self.run.state.step
        scores = evaluate(run.preview, self.probe, run.cfg, run.writer, step)
        self.curve.append(
            {
                "minutes": round(self.train_seconds / 60, 2),
                "step": step,
                "joint_accuracy": scores["joint_accuracy"],
                # each attribute's accuracy too (shape_accuracy, ...), so a study reads them without TensorBoard
                **{k: v for k, v in scores.items() if k.endswith(("_accuracy", "_prob")) and v is not None},
            }
        )
        with self.writing("run.json"):
            update_record(run.run_dir, quality_curve=self.curve)
        self.say(
            f"epoch {run.state.epoch} step {step}: joint prompt accuracy {scores['joint_accuracy']:.3f} after "
            f"{self.train_seconds / 60:.1f} min of training"
        )

    def checkpoint_due(self, end_of_epoch: bool) -> bool:
        cfg, state = self.run.cfg, self.run.state
        return (end_of_epoch and state.epoch % cfg["CHECKPOINT_EVERY"] == 0) or self.run.finished

    def checkpoint(self) -> None:
        """Write the checkpoint atomically, prune old ones, note the step in run.json; nothing when the run has not
        stepped since the last checkpoint (a window of skipped steps holds nothing new to keep)."""
        run, state = self.run, self.run.state
        if not self.main or state.step <= self.saved_step:
            return
        path = os.path.join(run.run_dir, "checkpoints", run_folder.checkpoint_name(state.epoch, state.step))
        run.writer.flush()  # the events up to this step are as durable as the checkpoint that a resume starts from
        try:
            ckpts.save_atomic(state.to_checkpoint(run.spec, loss=self.loss), path)
        except ckpts.CheckpointError as err:
            self.close()
            raise RunStopped(f"{err}. {self.next_move('free space (or fix the folder)')}") from None
        self.saved_step = state.step
        run_folder.prune(run.run_dir, run.cfg["KEEP_CHECKPOINTS"])
        with self.writing("run.json"):
            update_record(run.run_dir, step=state.step, epoch=state.epoch, final_loss=self.loss)

    # ---- faults and the end -----------------------------------------------------------------------------------
    def next_move(self, fix: str) -> str:
        """What to do after a failed write: resume from the last good checkpoint, or start again when none exists."""
        name = os.path.basename(self.run.run_dir)
        if run_folder.run_checkpoints(self.run.run_dir):
            return f'{last_good(self.run.run_dir)} {fix[0].upper() + fix[1:]} and resume: make train ARGS="--resume {name}"'
        return (
            f"No checkpoint was written yet: {fix}, and start it again with the same command (the folder "
            f"{name} holds no checkpoint, so the same --run name starts afresh)"
        )

    @contextlib.contextmanager
    def writing(self, what: str):
        """An OSError while writing ``what`` stops the run in one line that names the checkpoint to resume from."""
        try:
            yield
        except OSError as err:
            self.close()
            raise RunStopped(
                f"cannot write {what} in {self.run.run_dir} ({(err.strerror or str(err)).lower()}). "
                f"{self.next_move('fix the folder')}"
            ) from None

    def close(self) -> None:
        self.bar.close()
        self.run.writer.close()

    def summary(self) -> str:
        loss = "n/a" if math.isnan(self.loss) else f"{self.loss:.4f}"
        return f"done: {self.run.state.step} steps, final loss {loss}; run folder {self.run.run_dir}"
