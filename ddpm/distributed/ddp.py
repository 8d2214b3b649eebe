"""Data parallelism with ``torch.distributed`` as ``torchrun`` sets it up: one process per device, each holding the
whole model (``DistributedDataParallel`` averages the gradients in backward), each training on its slice of the
global batch.

Design (ADR 0017): every rank draws the *global* batch (permutation, timesteps, noise, caption dropout) from the
same seeded generator and keeps its slice (:meth:`World.shard`). DDP averages the ranks' mean gradients, which
is the mean gradient of the global batch, so N processes reproduce one process up to float reduction order.

What it does not do: elastic restarts (torchrun's ``--max-restarts`` relaunches the script, which then resumes
from the newest checkpoint like any ``--resume``), sharded optimizers (FSDP/ZeRO), gradient accumulation.

A rank that dies: torchrun's agent sees its exit and stops the others (``--max-restarts 0``); a rank that hangs
or a peer that vanishes without the agent noticing (another node) makes the next collective fail after the
process group's ``timeout`` with an error naming it, rather than wait forever.
"""

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")  # set by torchrun for every process it starts


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
            raise ValueError(f"BATCH_SIZE = {global_batch} is the global batch and must divide by the number of "
                             f"processes ({self.size}): pick a multiple of {self.size}, or another --nproc-per-node")
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
        raise ValueError(f"WORLD_SIZE is set but {', '.join(missing)} is not: start the processes with torchrun "
                         "(make train NPROC=N), which sets all three")
    rank, size, local_rank = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK = {local_rank} but this machine has {torch.cuda.device_count()} GPUs: "
                             "start at most that many processes per node (--nproc-per-node)")
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


def teardown(world: World) -> None:
    """Leaves the process group (after a barrier, so that no rank leaves while another still needs it)."""
    if world.distributed and dist.is_initialized():
        world.barrier()
        dist.destroy_process_group()


class NullWriter:
    """Stands in for TensorBoard's ``SummaryWriter`` on ranks other than 0: every call does nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None

