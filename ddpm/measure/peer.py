"""The peer our UNet is timed against: a diffusers ``UNet2DConditionModel`` configured to match it, and the adapter
that gives it our call ``eps = model(x, t, context, context_mask)``. diffusers is a benchmark-only dependency
(requirements-bench.txt); without it, building the peer raises ImportError with the pip command.
"""

import torch.nn as nn

DIFFUSERS_MISSING = (
    "diffusers is not installed; it is a benchmark-only dependency. Install it with "
    "`.venv/bin/pip install -r requirements-bench.txt` (pinned there), then run `make bench` again."
)


# ---- configuration ------------------------------------------------------------------------------------
def diffusers_args(args: dict) -> dict:
    """A ``UNet2DConditionModel`` config mirroring our UNet's ``args``.

    Same levels and widths (block_out_channels = base·mults), one ResNet per level down and two up
    (diffusers' up blocks add one, like ours), cross-attention blocks exactly at our attention resolutions,
    a cross-attention mid block, 3×3 stride-2 conv downsampling and nearest+conv upsampling, GroupNorm groups,
    a 4·TIME_EMB_DIM time embedding. ``attention_head_dim`` is, for this class, the number of heads (a
    historical misnomer, diffusers issue #2011). Left different, because the class does not expose them:
    a linear proj_in/proj_out around each transformer, a GEGLU feed-forward (ours: GELU) and a
    ``block_out_channels[0]``-wide sinusoidal timestep projection (ours: TIME_EMB_DIM). Ours without linear
    biases or with RMSNorm (``linear_bias``, ``norm``; ADRs 0029, 0030) is still compared with diffusers' biases
    and GroupNorm/LayerNorm, which the class offers no switch for; our pooled-text path (``pooled_text``, ADR
    0032: a masked mean and one linear layer per image, well under 0.1 % of the FLOPs) has no counterpart there.
    Our AdaGN (``scale_shift``, ADR 0034) is the class's ``resnet_time_scale_shift="scale_shift"``.
    """
    mults = args["channel_mults"]
    res = [args["image_size"] // 2**i for i in range(len(mults))]
    attn = [r in args["attention_resolutions"] for r in res]
    return dict(
        sample_size=args["image_size"],
        in_channels=args["in_channels"],
        out_channels=args["in_channels"],
        block_out_channels=tuple(args["base_channels"] * m for m in mults),
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        mid_block_type="UNetMidBlock2DCrossAttn",
        layers_per_block=args["num_res_blocks"],
        cross_attention_dim=args["context_dim"],
        attention_head_dim=args["attention_heads"],
        norm_num_groups=args["norm_groups"],
        dropout=args["dropout"],
        time_embedding_dim=4 * args["time_emb_dim"],
        use_linear_projection=True,
        downsample_padding=1,
        act_fn="silu",
        resnet_time_scale_shift="scale_shift" if args.get("scale_shift") else "default",
    )


class DiffusersEps(nn.Module):
    """Adapter: ``eps = model(x, t, context, context_mask)`` for a ``UNet2DConditionModel``."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x, t, context, context_mask=None):
        return self.unet(x, t, encoder_hidden_states=context, encoder_attention_mask=context_mask).sample


def build_diffusers(args: dict) -> nn.Module:
    try:
        from diffusers import UNet2DConditionModel
    except ImportError as err:
        raise ImportError(DIFFUSERS_MISSING) from err
    return DiffusersEps(UNet2DConditionModel(**diffusers_args(args)))
