"""A small text-conditional DDPM for 32×32 images, by concern; each subpackage's docstring says what it may import.

    from ddpm import Pipeline
    images = Pipeline.from_pretrained("runs/my-run")(["a red circle on a blue background"])  # PIL images

    model/       the network and its maths: UNet, Gaussian diffusion and samplers, text encoders, EMA
    data/        datasets: images in [-1, 1] with their captions (shapes, cifar10, folder), the decode cache
    run/         one run's parts: config validation, the checkpoint format, sampling settings, prompts → images
    training/    building a training run, one optimizer step, and its monitoring (train.py's loop calls them)
    decisions/   the ADR tooling: the record format, config.py's reader, the replay check, new ADRs, provenance
    measure/     evaluation (probe, prompts, scores, distances, report), the benchmark and the profiler
    experiments/ sweeps and scaling ladders: each trial a training run, ranked over seeds (make sweep, make ladder)
    distributed/ data-parallel training under torchrun: process group, heartbeat, all-reduces, batch slices
    files.py     atomic file writes; cli.py: command-line words and the one-line error exit; both below every room

Arrows point one way: model and data import nothing of the repo but themselves (and files.py, cli.py); run
imports model and data; decisions imports only itself; measure may import all of these; distributed imports
model, data and run; training and experiments may import all of these. No module here imports ``config``: the
entry points (train.py, sample.py) read it once and pass plain values. tests/test_layout.py enforces this.
"""


def __getattr__(name):
    """``from ddpm import Pipeline``: loaded on first use, so that the torch-free rooms (the decisions check)
    import without torch."""
    if name == "Pipeline":
        from ddpm.run.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module 'ddpm' has no attribute {name!r}")
