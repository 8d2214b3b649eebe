import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# make test runs the tests on as many pytest-xdist workers as there are cores (ADR 0057): each worker then takes one
# core's share of threads, and so do the train.py processes it starts, which inherit OMP_NUM_THREADS.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // WORKERS))
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 0)) if WORKERS > 1 else 2)


@pytest.fixture
def tiny_unet_args():
    return dict(
        image_size=8,
        in_channels=3,
        base_channels=8,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(4,),
        time_emb_dim=8,
        context_dim=16,
        attention_heads=2,
        norm_groups=4,
        dropout=0.0,
    )
