"""One training run's parts: validation of the config values and their mapping to constructor arguments
(``settings``), the run's state and what a checkpoint holds (``state``), checkpoints written atomically and read
safely (``checkpoint``), the run folder with run.json, TensorBoard and grids (``folder``), and prompts → images
rebuilt from a checkpoint alone (``pipeline``).

May import: ``ddpm.model``, ``ddpm.data``, ``ddpm.files`` and ``ddpm.run`` itself. Never decisions or measurement.
"""
