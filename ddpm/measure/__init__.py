"""Measurement: the probe classifier (``probe``), ``make eval`` (``evaluate``) and its report (``report``),
``make bench`` (``bench``) against diffusers, ``make profile`` (``profiling``), and the workload both of the
latter time (``workload``).

May import: ``ddpm.model``, ``ddpm.data``, ``ddpm.run``, ``ddpm.decisions``, ``ddpm.files`` and itself.
"""
