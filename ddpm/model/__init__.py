"""The network and its maths: the UNet (``unet``), Gaussian diffusion with its schedules, loss and samplers
(``diffusion``), the text encoders and tokenizer (``text``), the EMA update (``ema``).

May import: torch, open_clip, and ``ddpm.model`` itself. Never the run, data, decisions or measurement code.
"""
