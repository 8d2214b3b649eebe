"""Datasets: images (N, 3, H, W) in [-1, 1] with one caption each, and the start-up check on their range.
``shapes`` is the embedded procedural dataset (ADR 0002); ``cifar10`` and ``folder`` read real images from
disk through a decode cache (ADR 0019). ``load.load_dataset`` is the entry for all three.

May import: torch, numpy, PIL, ``ddpm.files`` and ``ddpm.data`` itself.
"""
