"""One training run's parts: validation of the config values and their mapping to constructor arguments
(``settings``), self-describing checkpoints written atomically (``checkpoint``), and prompts → images rebuilt
from a checkpoint alone (``pipeline``).

May import: ``ddpm.model``, ``ddpm.data``, ``ddpm.files`` and ``ddpm.run`` itself. Never decisions or measurement.
"""
