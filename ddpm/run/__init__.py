"""One training run's parts: validation of the config values and their mapping to constructor arguments
(``settings``), the run's state and what a checkpoint holds (``state``), checkpoints written atomically and read
safely (``checkpoint``), the run folder with run.json, TensorBoard and grids (``folder``), prompts → images
rebuilt from a checkpoint alone (``pipeline``), and the checks of sampling parameters that ``sample.py`` and
``make eval`` share (``sampling_args``).

May import: ``ddpm.model``, ``ddpm.data``, ``ddpm.files`` and ``ddpm.run`` itself. Never decisions or measurement.
"""
