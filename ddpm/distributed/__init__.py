"""Data-parallel training under ``torchrun`` (``ddp``): the process group from torchrun's environment (gloo on CPU,
NCCL on CUDA) with a timeout, the rank-0-only helpers, the all-reduces the loop needs, rank-aware seeding, the
slice of a global batch each rank trains on, and the teardown. One process without torchrun is the world of one.

May import: torch, ``ddpm.model``, ``ddpm.data``, ``ddpm.run``, ``ddpm.files`` and ``ddpm.distributed`` itself.
"""
