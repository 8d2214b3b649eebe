"""A small conditional UNet for 32×32 images: ε_θ(x_t, t, text).

The DDPM UNet (Ho et al. 2020, §4 and appendix B; PixelCNN++-style residual blocks) with the text conditioning
of latent diffusion (Rombach et al. 2022, §3.3): at the resolutions in ``attention_resolutions`` a block runs
self-attention over the H·W positions, then cross-attention from those positions to the prompt's token
embeddings, then a feed-forward layer. The timestep enters every residual block through a sinusoidal
embedding (Vaswani et al. 2017, §3.5) and an MLP.

Four options change the layers; their defaults build today's network exactly: ``linear_bias=False`` drops the
bias of every ``nn.Linear`` (ADR 0029), ``norm="rms"`` replaces GroupNorm and LayerNorm by RMSNorm (Zhang & Sennrich
2019), group-wise on the convolutional feature maps (ADR 0030), and ``pooled_text=True`` adds a projection of the
prompt's mean token embedding to the timestep embedding, so that every residual block sees the prompt, not only
the attention resolutions (GLIDE, Nichol et al. 2021, §2.3; Imagen, Saharia et al. 2022, §2.2) (ADR 0032), and
``scale_shift=True`` makes that embedding a scale and shift of each residual block's second norm (ADM's AdaGN,
Dhariwal & Nichol 2021, §3) instead of a bias (ADR 0034).

Every hyperparameter is a keyword-only constructor argument; ``UNet(**checkpoint["unet_args"])`` rebuilds it.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

NORMS = ("group", "rms")  # "group": GroupNorm on feature maps, LayerNorm on tokens; "rms": RMSNorm on both
NORM_EPS = 1e-5  # ε of every normalisation layer (torch's default for GroupNorm and LayerNorm)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps t (B,) → (B, dim): [cos(t·ω_i), sin(t·ω_i)], ω_i = max_period^(−i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class GroupRMSNorm(nn.Module):
    """RMSNorm over channel groups of a feature map (B, C, H, W): GroupNorm without the mean subtraction.

    RMSNorm (Zhang & Sennrich 2019, eq. 4) rescales a vector of summed inputs a by its root mean square,
    ā_i = a_i / RMS(a) · g_i with RMS(a) = √(mean(a²)), keeping LayerNorm's re-scaling invariance and dropping
    its re-centering. As GroupNorm (Wu & He 2018) does for LayerNorm on conv features, the vector here is one
    group of C/G channels over all H·W positions; the gain g (C,) is per channel, initialised to 1, and there is
    no shift. ε = NORM_EPS is added under the root. Statistics in float32; the memory format is kept.
    """

    def __init__(self, groups: int, channels: int):
        super().__init__()
        if channels % groups:
            raise ValueError(f"GroupRMSNorm: {channels} channels do not split into {groups} groups")
        self.groups = groups
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.float().unflatten(1, (self.groups, -1))  # (B, G, C/G, H, W), a view in either memory format
        a = a * torch.rsqrt(a.pow(2).mean(dim=(2, 3, 4), keepdim=True) + NORM_EPS)
        return (a.flatten(1, 2) * self.weight[:, None, None]).to(x.dtype)


class RMSNorm(nn.RMSNorm):
    """``torch.nn.RMSNorm`` over the last dimension (C,) of tokens (B, N, C), computed in float32.

    Under bf16 autocast the input is bf16 and the gain float32, a mix torch's fused kernel refuses with a
    warning; in float32 it runs fused, and the output is cast back, as LayerNorm's is on CPU.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


def feature_norm(kind: str, groups: int, channels: int) -> nn.Module:
    """The normalisation of conv feature maps (B, C, H, W) for ``kind`` in NORMS."""
    return nn.GroupNorm(groups, channels) if kind == "group" else GroupRMSNorm(groups, channels)


def token_norm(kind: str, channels: int) -> nn.Module:
    """The normalisation of tokens (B, N, C) in the transformer blocks for ``kind`` in NORMS."""
    return nn.LayerNorm(channels) if kind == "group" else RMSNorm(channels, eps=NORM_EPS)


class ResBlock(nn.Module):
    """Norm → SiLU → 3×3 conv, twice, with the embedding between; 1×1 conv skip.

    The embedding enters as a per-channel bias after the first conv (DDPM), or with ``scale_shift`` as a scale and
    shift of the second norm, norm(h)·(1 + s) + b (AdaGN, Dhariwal & Nichol 2021 §3), which can switch channels on
    and off per timestep (and per prompt, with the pooled text in the embedding) where a bias can only offset them.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        *,
        temb_dim: int,
        groups: int,
        dropout: float,
        norm: str,
        linear_bias: bool,
        scale_shift: bool = False,
    ):
        super().__init__()
        self.scale_shift = scale_shift
        self.norm1 = feature_norm(norm, groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb = nn.Linear(temb_dim, 2 * c_out if scale_shift else c_out, bias=linear_bias)
        self.norm2 = feature_norm(norm, groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity (improved-diffusion's zero_module)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:  # x (B,C,H,W), temb (B,T)
        h = self.conv1(F.silu(self.norm1(x)))
        emb = self.temb(temb)[:, :, None, None]
        if self.scale_shift:
            scale, shift = emb.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + emb)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


def attention(q, k, v, mask=None):
    """softmax(q·kᵀ/√d, masked)·v for q (B,h,N,d), k and v (B,h,L,d), mask (B,1,1,L) bool, True = attend.

    ``F.scaled_dot_product_attention`` but in one case: training in bf16 on a CPU. There the fused kernel's
    backward with our 16-wide heads is slow in bf16, and three plain ops do better, most of all under
    ``torch.compile``, which fuses the scale, mask and softmax into its own kernels. Measured on a 2-core Zen 4,
    one process, interleaved (decisions/0013), a compiled bf16 training step of the default UNet: 120 img/s
    written out, 108 with the fused kernel run in fp32; eagerly, 76 with the fused kernel in bf16. Without
    gradients (sampling) the fused bf16 kernel is the faster one, so it stays there.
    The scale multiplies q (B,h,N,d) rather than the larger scores (B,h,N,L).
    """
    if not (torch.is_grad_enabled() and q.requires_grad and q.dtype == torch.bfloat16 and q.device.type == "cpu"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


class Attention(nn.Module):
    """Multi-head attention of queries x (B,N,C) over keys/values ctx (B,L,D); mask (B,L) True = attend."""

    def __init__(self, dim: int, ctx_dim: int, *, heads: int, out_bias: bool):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(ctx_dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=out_bias)

    def forward(self, x, ctx, mask=None):
        b, n, c = x.shape
        q = self.to_q(x).view(b, n, self.heads, -1).transpose(1, 2)  # (B, heads, N, C/heads)
        k, v = self.to_kv(ctx).view(b, ctx.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn_mask = None if mask is None else mask[:, None, None, :]  # broadcast over heads and queries
        h = attention(q, k, v, attn_mask)
        return self.out(h.transpose(1, 2).reshape(b, n, c))


class TransformerBlock(nn.Module):
    """Self-attention, cross-attention to the prompt, feed-forward; pre-norm, residual, on (B, C, H, W)."""

    def __init__(self, channels: int, *, context_dim: int, heads: int, groups: int, norm: str, linear_bias: bool):
        super().__init__()
        self.norm_in = feature_norm(norm, groups, channels)
        self.norm1, self.norm2, self.norm3 = (token_norm(norm, channels) for _ in range(3))
        self.self_attn = Attention(channels, channels, heads=heads, out_bias=linear_bias)
        self.cross_attn = Attention(channels, context_dim, heads=heads, out_bias=linear_bias)
        self.ff = nn.Sequential(
            nn.Linear(channels, 4 * channels, bias=linear_bias),
            nn.GELU(),
            nn.Linear(4 * channels, channels, bias=linear_bias),
        )
        nn.init.zeros_(self.ff[-1].weight)
        if linear_bias:
            nn.init.zeros_(self.ff[-1].bias)

    def forward(self, x, context, context_mask):
        b, c, hgt, wid = x.shape
        h = self.norm_in(x).flatten(2).transpose(1, 2)  # (B, H·W, C)
        n1 = self.norm1(h)
        h = h + self.self_attn(n1, n1)
        h = h + self.cross_attn(self.norm2(h), context, context_mask)
        h = h + self.ff(self.norm3(h))
        return x + h.transpose(1, 2).reshape(b, c, hgt, wid)


def pooled(context: torch.Tensor, mask: torch.Tensor = None) -> torch.Tensor:
    """Mean of the token embeddings context (B, L, D) over the positions where mask (B, L) is True → (B, D).

    The mean, not the end-of-text token's embedding as in GLIDE: it needs no token positions, so it works the
    same for the scratch encoder and the open_clip tower, and padding (mask False) does not enter it.
    """
    if mask is None:
        return context.mean(dim=1)
    weights = mask.to(context.dtype)[..., None]  # (B, L, 1)
    return (context * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


class UNet(nn.Module):
    """ε_θ(x (B,3,H,W) in [-1,1], t (B,), context (B,L,D), context_mask (B,L) bool) → ε̂ (B,3,H,W).

    Level i works at resolution image_size / 2^i with base_channels·channel_mults[i] channels and
    ``num_res_blocks`` residual blocks (one more on the way up, for the skip connections).
    ``linear_bias``, ``norm``, ``pooled_text`` and ``scale_shift`` default to the network checkpoints written before
    they existed hold (ADRs 0029, 0030, 0032, 0034).
    """

    def __init__(
        self,
        *,
        image_size: int,
        in_channels: int,
        base_channels: int,
        channel_mults: tuple,
        num_res_blocks: int,
        attention_resolutions: tuple,
        time_emb_dim: int,
        context_dim: int,
        attention_heads: int,
        norm_groups: int,
        dropout: float,
        linear_bias: bool = True,
        norm: str = "group",
        pooled_text: bool = False,
        scale_shift: bool = False,
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r}: allowed: {', '.join(map(repr, NORMS))}")
        self.time_emb_dim = time_emb_dim
        temb = 4 * time_emb_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(time_emb_dim, temb, bias=linear_bias), nn.SiLU(), nn.Linear(temb, temb, bias=linear_bias)
        )
        # Built after the time MLP and before everything else only when asked for, so that pooled_text=False
        # draws the same initial weights from the same seed as a UNet from before the option.
        self.text_to_time = nn.Linear(context_dim, temb, bias=linear_bias) if pooled_text else None
        block = dict(
            temb_dim=temb,
            groups=norm_groups,
            dropout=dropout,
            norm=norm,
            linear_bias=linear_bias,
            scale_shift=scale_shift,
        )
        attn = dict(
            context_dim=context_dim, heads=attention_heads, groups=norm_groups, norm=norm, linear_bias=linear_bias
        )

        def stage(c_in, c_out, res):
            layers = nn.ModuleList([ResBlock(c_in, c_out, **block)])
            if res in attention_resolutions:
                layers.append(TransformerBlock(c_out, **attn))
            return layers

        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips, ch, res = [base_channels], base_channels, image_size
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(stage(ch, base_channels * mult, res))
                ch = base_channels * mult
                skips.append(ch)
            if level != len(channel_mults) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
                res //= 2

        self.mid = nn.ModuleList([ResBlock(ch, ch, **block), TransformerBlock(ch, **attn), ResBlock(ch, ch, **block)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(stage(ch + skips.pop(), base_channels * mult, res))
                ch = base_channels * mult
            if level != 0:
                self.up.append(
                    nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)])
                )
                res *= 2

        self.norm_out = feature_norm(norm, norm_groups, ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @staticmethod
    def _run(layers, h, temb, context, context_mask):
        for layer in layers:
            if isinstance(layer, ResBlock):
                h = layer(h, temb)
            elif isinstance(layer, TransformerBlock):
                h = layer(h, context, context_mask)
            else:
                h = layer(h)
        return h

    def forward(self, x, t, context, context_mask=None):
        temb = self.time_mlp(timestep_embedding(t, self.time_emb_dim))
        if self.text_to_time is not None:
            temb = temb + self.text_to_time(pooled(context, context_mask))
        h = self.conv_in(x)
        hs = [h]
        for layers in self.down:
            h = self._run(layers, h, temb, context, context_mask)
            hs.append(h)
        h = self._run(self.mid, h, temb, context, context_mask)
        for layers in self.up:
            if isinstance(layers[0], ResBlock):  # a resolution stage takes the matching skip connection
                h = torch.cat([h, hs.pop()], dim=1)
            h = self._run(layers, h, temb, context, context_mask)
        return self.conv_out(F.silu(self.norm_out(h)))
