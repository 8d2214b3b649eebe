"""ADR 0058's timing: 64 guided samples of one prompt from a checkpoint, per sampler and step count, in one process.

Run from the repository root, alone:
    .venv/bin/python decisions/evidence/0058-sample-time.py runs/<run>/checkpoints/<ckpt>.pt [sampler:steps ...]

Without settings, ADR 0058's: ddim:50 dpmpp2m:20 dpmpp2m:15 dpmpp2m:10 (ADR 0059 added ddim:20).
"""

import os
import sys
import time

sys.path.insert(0, os.getcwd())
from ddpm import Pipeline  # noqa: E402

SETTINGS = [("ddim", 50), ("dpmpp2m", 20), ("dpmpp2m", 15), ("dpmpp2m", 10)]


def main(path: str, settings: list) -> None:
    pipe = Pipeline.from_pretrained(path)
    prompts = ["a red circle on a blue background"] * 64
    pipe(prompts[:8], output_type="pt", num_steps=2)  # warm-up: the first call pays for allocation
    for sampler, steps in settings or SETTINGS:
        start = time.perf_counter()
        pipe(prompts, output_type="pt", sampler=sampler, num_steps=steps, seed=0)
        print(f"{sampler} {steps} steps: {time.perf_counter() - start:.1f} s for 64 samples", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], [(a.split(":")[0], int(a.split(":")[1])) for a in sys.argv[2:]])
