"""Datasets: images (N, 3, H, W) in [-1, 1] with one caption each, and the start-up check on their range.
``shapes`` is the embedded procedural dataset (ADR 0002).

May import: torch, numpy, PIL, ``ddpm.files`` and ``ddpm.data`` itself.
"""
