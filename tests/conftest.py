import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
torch.set_num_threads(2)


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
