"""Data parallelism with ``torch.distributed`` as ``torchrun`` sets it up: one process per device, each holding the
whole model (``DistributedDataParallel`` averages the gradients in backward), each training on its slice of the
global batch.

Design (ADR 0017): every rank draws the *global* batch (permutation, timesteps, noise, caption dropout) from the
same seeded generator and keeps its slice (:meth:`World.shard`). DDP averages the ranks' mean gradients, which
is the mean gradient of the global batch, so N processes reproduce one process up to float reduction order.

What it does not do: elastic restarts (torchrun's ``--max-restarts`` relaunches the script, which then resumes
from the newest checkpoint like any ``--resume``), sharded optimizers (FSDP/ZeRO), gradient accumulation.

A rank that dies: torchrun's agent sees its exit and stops the others (``--max-restarts 0``). A rank that stops
(SIGSTOP, a hung driver, a lost machine) is found by a heartbeat: every rank bumps its own counter in the
rendezvous store every ``HEARTBEAT_SECONDS`` from a thread of its own, and watches the others'; a peer whose
counter has not moved for ``HEARTBEAT_LIMIT`` seconds is taken for gone, and the watching rank ends with one line
(``on_silent``), which makes torchrun stop the rest. Why a heartbeat and not a shorter collective timeout: a
collective's wait says nothing about the peer, only about how long it took, and rank 0 legitimately works alone
for minutes (training the probe the first time, decoding a dataset, a grid and a probe evaluation, a large
checkpoint) while the others wait in the next collective; a timeout short enough to catch a stopped rank soon
would end such runs, one long enough for them leaves a stopped rank holding the others for it (10 minutes). A
heartbeat thread keeps beating through all of that work, and stops only with its process. The process group's
``timeout`` stays as the last guard.
"""

import datetime
import os
import sys
import threading
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # set by torchrun for every process it starts
HEARTBEAT_SECONDS = 5.0  # how often each rank shows it is alive
HEARTBEAT_LIMIT = 60.0  # a peer silent this long is taken for stopped or lost (12 missed beats)


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` (``local_rank`` on its machine), the ``device`` it trains on."""

    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files, logs and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def local_batch(self, global_batch: int) -> int:
        """Images per rank; the global batch must divide by the world size (else a ValueError saying so)."""
        if global_batch % self.size:
            raise ValueError(
                f"BATCH_SIZE = {global_batch} is the global batch and must divide by the number of "
                f"processes ({self.size}): pick a multiple of {self.size}, or another --nproc-per-node"
            )
        return global_batch // self.size

    def shard(self, *tensors):
        """This rank's contiguous slice along dim 0 of each global-batch tensor (B, ...) → (B / size, ...)."""
        out = []
        for x in tensors:
            b = self.local_batch(x.shape[0])
            out.append(x[self.rank * b : (self.rank + 1) * b])
        return out if len(out) > 1 else out[0]

    def wrap(self, module: torch.nn.Module):
        """``module`` under DDP when there are several processes, else itself. Save and load ``module``, not this.

        ``forward_sync_buffers=False``: the models here hold no running statistics, so nothing needs syncing
        before each forward; every rank builds the same initial weights from SEED, and DDP broadcasts rank 0's
        parameters and buffers once, at construction.
        """
        if not self.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)

    def all_true(self, flag: torch.Tensor) -> bool:
        """True when ``flag`` (a bool tensor, any device) is true on every rank; one host sync."""
        flag = flag.detach().to(torch.int32).reshape(1)
        if self.distributed:
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce (sum) in place across ranks; returns ``tensor``. No host sync."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (a picklable object: a run name, a path)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)


def init(device: str, *, timeout: datetime.timedelta) -> World:
    """The world from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or a world of one.

    ``device``: ``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``. On CUDA each process takes GPU
    ``LOCAL_RANK`` and the backend is NCCL; on CPU it is gloo. ``timeout``: how long a collective may wait for
    a peer before the run stops with an error (the dead-rank guard); it must cover the longest stretch that rank
    0 spends alone (the sample grid and the probe evaluation) plus a checkpoint write.
    """
    env = {k: os.environ.get(k) for k in ENV}
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if env["WORLD_SIZE"] is None or int(env["WORLD_SIZE"]) == 1:
        return World(0, 1, 0, torch.device("cuda" if cuda else device if device != "auto" else "cpu"))
    missing = [k for k, v in env.items() if v is None]
    if missing:
        raise ValueError(
            f"WORLD_SIZE is set but {', '.join(missing)} is not: start the processes with torchrun "
            "(make train NPROC=N), which sets all three"
        )
    rank, size, local_rank = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK = {local_rank} but this machine has {torch.cuda.device_count()} GPUs: "
                "start at most that many processes per node (--nproc-per-node)"
            )
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout, device_id=dev if cuda else None)
    return World(rank, size, local_rank, dev)


def seed_for(seed: int, rank: int, step: int = 0) -> int:
    """A seed for rank ``rank``'s own randomness (dropout) at optimizer step ``step``: distinct per rank and step.

    The global batch's draws do not use it (every rank shares those); rank 0 at step 0 gets ``seed`` itself.
    """
    return seed if rank == 0 and step == 0 else (seed * 1_000_003 + rank * 7_919 + step) % 2**63


class Heartbeat:
    """Each rank's counter in the rendezvous store, bumped and watched from a daemon thread (see the module's
    docstring). When a peer has been silent too long, the thread prints one line (ending with ``advice()``, what
    is intact and how to resume) and ends this process (exit code 1), which torchrun answers by stopping every
    rank."""

    def __init__(self, world: World, *, advice=lambda: "", every: float = None, limit: float = None):
        self.world, self.advice = world, advice
        self.every, self.limit = every or HEARTBEAT_SECONDS, limit or HEARTBEAT_LIMIT
        self.store = dist.PrefixStore("ddpm-heartbeat/", dist.distributed_c10d._get_default_store())
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ddpm-heartbeat", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        peers = [r for r in range(self.world.size) if r != self.world.rank]
        seen = {r: (-1, time.monotonic()) for r in peers}  # rank → (counter, when it last moved)
        while not self.stopped.wait(self.every):
            try:
                self.store.add(str(self.world.rank), 1)
                now = time.monotonic()
                for r in peers:
                    count = self.store.add(str(r), 0)  # read without blocking: 0 where it never beat
                    if count != seen[r][0]:
                        seen[r] = (count, now)
                    elif now - seen[r][1] > self.limit and not self.stopped.is_set():
                        print(
                            f"train.py: rank {r} has given no sign of life for {now - seen[r][1]:.0f} s (stopped, "
                            f"hung or its machine lost); ending rank {self.world.rank} too, and torchrun the rest. "
                            f"{self.advice()}",
                            file=sys.stderr,
                            flush=True,
                        )
                        os._exit(1)  # the main thread may be blocked in a collective: end the process
            except Exception:  # noqa: BLE001 - the store is gone: the run is ending; the collectives say why
                return

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=2 * self.every)


def teardown(world: World, heartbeat: "Heartbeat" = None) -> None:
    """Leaves the process group (after a barrier, so that no rank leaves while another still needs it)."""
    if world.distributed and dist.is_initialized():
        world.barrier()
        if heartbeat is not None:
            heartbeat.stop()
        dist.destroy_process_group()


class NullWriter:
    """Stands in for TensorBoard's ``SummaryWriter`` on ranks other than 0: every call does nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None
