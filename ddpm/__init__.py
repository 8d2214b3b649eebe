"""A small text-conditional DDPM for 32×32 images, by concern; each subpackage's docstring says what it may import.

    model/      the network and its maths: UNet, Gaussian diffusion and samplers, text encoders, EMA
    data/       datasets: images in [-1, 1] with their captions (shapes, cifar10, folder), the decode cache, the checks
    run/        one training run's parts: config validation, checkpoints and the run state, prompts → images
    decisions/  the ADR tooling: the record format, the replay check, new ADRs, provenance, the runs table
    measure/    evaluation (probe, Fréchet distance, report), the benchmark and the profiler
    experiments/ sweeps and scaling ladders: each trial a training run, ranked over seeds (make sweep, make ladder)
    distributed/ data-parallel training under torchrun: process group, rank-0 helpers, all-reduces, batch slices
    files.py    atomic file writes, below every room

Arrows point one way: model and data import nothing of the repo but themselves (and files.py); run imports
model and data; decisions imports only itself; measure may import all of these; distributed imports model, data and run;
experiments may import all of these and measure. No module here imports
``config``: the entry points (train.py, sample.py) read it once and pass plain values. tests/test_layout.py
enforces this.
"""
