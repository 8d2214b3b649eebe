"""Data-parallel training on CPU with gloo (ADR 0017), through torchrun in subprocesses.

Two processes and one process given the same global batch reach the same weights; only rank 0 writes; a stopped and
resumed two-process run matches a straight one; a non-finite loss on one rank makes every rank skip that step.
"""

import os
import re
import subprocess
import sys

import pytest
import torch
from test_train_sample import ROOT, TINY, final_state, sets

from ddpm.distributed import ddp

FAST = [*TINY, "PRECISION=fp32", "GENERATE_SAMPLES_EVERY=100"]  # fp32: the comparison is against float tolerance
POISON = """
import os, sys, torch
from torch.optim.optimizer import register_optimizer_step_post_hook
import train
from ddpm.model.diffusion import GaussianDiffusion

rank, calls, steps = int(os.environ["RANK"]), [0], [0]
clean = GaussianDiffusion.loss_per_sample

def poisoned(self, *args, **kwargs):  # the second training batch of rank 1 only gets a NaN loss (or rank 1 dies)
    calls[0] += 1
    out = clean(self, *args, **kwargs)
    if rank == 1 and calls[0] == 2 and os.environ.get("DIE"):
        os._exit(3)
    return out * float("nan") if rank == 1 and calls[0] == 2 else out

GaussianDiffusion.loss_per_sample = poisoned
register_optimizer_step_post_hook(lambda *a: steps.__setitem__(0, steps[0] + 1))
train.main(sys.argv[1:])
print(f"rank {rank}: {steps[0]} optimizer steps", flush=True)
"""


def launch(nproc, runs, name, *extra, script=os.path.join(ROOT, "train.py"), env=None, ok=True):
    naming = [] if "--resume" in extra else ["--run-name", name]  # torchrun takes --run for its --run-path
    args = ["--runs-dir", str(runs), *naming, *sets(*FAST)]
    cmd = (
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(nproc),
            script,
            *args,
            *extra,
        ]
        if nproc > 1
        else [sys.executable, script, *args, *extra]
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        **(env or {}),
    }
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)  # a hang fails here
    assert (proc.returncode == 0) == ok, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    launch(2, runs, "two", "--max-steps", "5")  # past an epoch boundary (4 batches of 16 in 64 images)
    return runs


def assert_same_weights(a, b, **tol):
    for key in ("unet", "ema_unet", "text_encoder"):
        for name, tensor in a[key].items():
            torch.testing.assert_close(tensor, b[key][name], **tol, msg=lambda m: f"{key}.{name}: {m}")


def test_two_processes_write_one_run(runs):
    assert [p.name for p in runs.iterdir() if not p.name.startswith(".")] == ["two"]
    run_dir = runs / "two"
    writers = {p.name.split(".")[-2] for p in run_dir.glob("events.out.tfevents.*")}  # …<host>.<pid>.<n>
    assert len(writers) == 1  # one process wrote events (two files: add_hparams writes its own)
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt")) == [
        "ckpt-epoch0001-step0000004.pt",
        "ckpt-epoch0001-step0000005.pt",
    ]
    assert len(list((run_dir / "samples").glob("*.png"))) == 1  # the last step's grid, from rank 0 alone
    assert final_state(runs, "two")["step"] == 5


def test_two_processes_match_one_process_of_the_same_global_batch(runs):
    launch(1, runs, "one", "--max-steps", "5")
    # Up to float rounding: gloo sums the two halves' gradients in another order than one process does, and
    # Adam's per-element normalisation can turn that rounding in a near-zero gradient into an update difference
    # (1.6e-5 seen on an AVX-512 CPU). Five steps move a weight by up to 1e-2, so 1e-4 still catches a wrong slice.
    assert_same_weights(final_state(runs, "two"), final_state(runs, "one"), rtol=1e-3, atol=1e-4)


def test_two_processes_resume_exactly(runs):
    launch(2, runs, "halves", "--max-steps", "2")
    launch(2, runs, "halves", "--resume", "halves", "--max-steps", "5")
    assert_same_weights(final_state(runs, "two"), final_state(runs, "halves"), rtol=0, atol=0)


def test_a_nan_on_one_rank_makes_every_rank_skip(tmp_path):
    script = tmp_path / "poisoned_train.py"
    script.write_text(POISON)
    proc = launch(2, tmp_path, "nan", "--max-steps", "3", script=str(script))
    # two processes share one stdout, so their lines may run together: find the reports, not the lines
    assert sorted(re.findall(r"rank \d: \d+ optimizer steps", proc.stdout)) == [
        "rank 0: 3 optimizer steps",
        "rank 1: 3 optimizer steps",
    ]  # 4 batches drawn, the poisoned one skipped
    state = final_state(tmp_path, "nan")
    assert state["step"] == 3 and state["batch_in_epoch"] == 4
    assert all(torch.isfinite(t).all() for t in state["unet"].values())


def test_the_global_batch_must_divide_by_the_world_size():
    world = ddp.World(rank=1, size=3, local_rank=1, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="BATCH_SIZE = 16 is the global batch and must divide by the number of"):
        world.local_batch(16)
    assert torch.equal(world.shard(torch.arange(12)), torch.arange(4, 8))
    assert ddp.seed_for(7, 0) == 7 and len({ddp.seed_for(7, r, s) for r in range(3) for s in range(3)}) == 9


def test_a_dead_rank_ends_the_run_with_a_message(tmp_path):
    script = tmp_path / "dying_train.py"
    script.write_text(POISON)
    proc = launch(2, tmp_path, "dead", "--max-steps", "3", script=str(script), env={"DIE": "1"}, ok=False)
    assert "exitcode  : 3" in proc.stderr and "rank      : 1" in proc.stderr  # torchrun names the rank that died
    assert not list(tmp_path.glob("dead/checkpoints/*.pt"))  # nothing half-written
