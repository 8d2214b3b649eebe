"""Prompts → token embeddings (B, L, D) for the UNet's cross-attention.

Two encoders behind one call, ``build_text_encoder(kind=..., ...)``:

- "scratch": a small open_clip ``TextTransformer`` (CLIP's text tower, Radford et al. 2021, §2.4), randomly
  initialised and trained jointly with the UNet. Works offline; its weights go into the checkpoint.
- "open_clip": the text tower of a pretrained open_clip model, named by model name and a pretrained tag or a
  local weights file. Frozen by default, so its outputs can be cached per caption and its weights are not
  stored in our checkpoints, only the reference to load them again. With ``train_tower=True`` (ADR 0031) it is
  fine-tuned with the UNet instead: never cached, and its weights are stored like the scratch encoder's.

Both read tokens from open_clip's BPE tokenizer (bundled with the package, no download). The empty prompt
"" encodes to [SOT, EOT] and is the null condition of classifier-free guidance.
"""

import contextlib
import os
import warnings

import open_clip
import torch
import torch.nn as nn

ENCODER_KINDS = ("scratch", "open_clip")


class PromptTokenizer:
    """Strings → (tokens (B, L) long, mask (B, L) bool, True where a token is real, not padding)."""

    def __init__(self, *, context_length: int, open_clip_model: str = ""):
        self.context_length = context_length
        self._tok = open_clip.get_tokenizer(open_clip_model or "ViT-B-32", context_length=context_length)

    def __call__(self, prompts: list):
        for p in prompts:
            if self.is_truncated(p):
                warnings.warn(f"prompt {p[:60]!r}... is longer than {self.context_length} tokens and was truncated")
        tokens = self._tok(list(prompts), context_length=self.context_length)
        return tokens, tokens != 0

    def is_truncated(self, prompt: str) -> bool:
        encode = getattr(self._tok, "encode", None)
        return encode is not None and len(encode(prompt)) + 2 > self.context_length  # + SOT and EOT


BPE_VOCAB_SIZE = 49408  # token ids of open_clip's bundled BPE vocabulary


class ScratchTextEncoder(nn.Module):
    """A small causal text transformer trained from scratch: tokens (B, L) → (B, L, width).

    Its embedding table has a row only for the BPE ids in ``vocab`` (those of the training captions) plus
    one shared row for every other id: the other 49k rows would never receive a gradient, yet would make
    each checkpoint over a hundred megabytes.
    """

    frozen = False

    def __init__(self, *, context_length: int, width: int, heads: int, layers: int, vocab: tuple):
        super().__init__()
        lookup = torch.zeros(BPE_VOCAB_SIZE, dtype=torch.long)  # row 0: "unknown"
        lookup[torch.tensor(vocab, dtype=torch.long)] = torch.arange(1, len(vocab) + 1)
        self.register_buffer("lookup", lookup, persistent=False)
        self.net = open_clip.transformer.TextTransformer(
            context_length=context_length,
            vocab_size=len(vocab) + 1,
            width=width,
            heads=heads,
            layers=layers,
            output_dim=None,
            output_tokens=True,
        )
        self.dim = width

    def unknown_words(self, tokens: torch.Tensor, mask: torch.Tensor) -> int:
        """How many real tokens of (B, L) ``tokens`` the encoder never saw in training."""
        return int(((self.lookup[tokens] == 0) & mask).sum())

    def unseen_words(self, tokenizer, prompt: str) -> list:
        """The whitespace-separated words of ``prompt`` with a BPE token the training captions never used."""
        words = prompt.split()
        if not words:
            return []
        tokens, mask = tokenizer(words)  # one row per word
        unseen = ((self.lookup[tokens] == 0) & mask).any(1)
        return [w for w, u in zip(words, unseen.tolist()) if u]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net(self.lookup[tokens])[1]


class OpenClipTextEncoder(nn.Module):
    """The text tower of a pretrained open_clip model: tokens (B, L) → (B, L, width), before pooling.

    Frozen (``trainable=False``): no gradients, always in eval mode. Trained (``trainable=True``): every parameter
    that reaches the token outputs is trained, the positional embedding included; the projection of the pooled
    output, which the UNet never sees, stays frozen (under DDP a parameter without a gradient is an error).
    ``load_pretrained=False`` builds the architecture alone, for a checkpoint whose own trained tower weights
    replace the pretrained ones: sampling it then needs neither the weights file nor a download.
    """

    def __init__(self, *, model_name: str, pretrained: str, trainable: bool, load_pretrained: bool):
        super().__init__()
        if load_pretrained:
            if not pretrained:
                raise ValueError(
                    "the open_clip text encoder needs OPEN_CLIP_PRETRAINED: a pretrained tag or a weights file"
                )
            looks_like_path = os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
            if looks_like_path and not os.path.isfile(pretrained):
                raise FileNotFoundError(f"OPEN_CLIP_PRETRAINED={pretrained!r}: no such weights file")
        try:
            clip = open_clip.create_model(model_name, pretrained=pretrained if load_pretrained else None)
        except RuntimeError as err:  # open_clip raises RuntimeError for unknown tags and failed downloads
            raise RuntimeError(
                f"could not load open_clip {model_name!r} with pretrained={pretrained!r}: {err}. "
                "Without network access, pass a local weights file path as OPEN_CLIP_PRETRAINED."
            ) from err
        if hasattr(clip, "text"):  # CustomTextCLIP keeps its tower in .text
            self.tower = clip.text
            self.tower.output_tokens = True
            if isinstance(getattr(self.tower, "text_projection", None), (nn.Module, nn.Parameter)):
                self.tower.text_projection.requires_grad_(False)  # maps the pooled output only
        else:  # CLIP keeps the tower's parts on the model itself
            self.tower = nn.ModuleDict({k: getattr(clip, k) for k in ("token_embedding", "transformer", "ln_final")})
            position = clip.positional_embedding.detach().clone()  # (L, width)
            if trainable:
                self.positional_embedding = nn.Parameter(position)
            else:
                self.register_buffer("positional_embedding", position, persistent=False)
            self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        self.context_length = clip.context_length
        self.dim = clip.transformer.width if not hasattr(clip, "text") else clip.text.width
        self.frozen = not trainable
        if self.frozen:
            self.requires_grad_(False)
        self.train(trainable)

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)  # frozen: dropout and friends stay off

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.no_grad() if self.frozen else contextlib.nullcontext():
            if isinstance(self.tower, nn.ModuleDict):  # as CLIP.encode_text, stopping before the pooling
                x = self.tower["token_embedding"](tokens) + self.positional_embedding
                x = self.tower["transformer"](x, attn_mask=self.attn_mask)
                return self.tower["ln_final"](x)
            return self.tower(tokens)[1]


def build_text_encoder(
    *,
    kind: str,
    context_length: int,
    width: int,
    heads: int,
    layers: int,
    open_clip_model: str,
    open_clip_pretrained: str,
    vocab: tuple = (),
    train_tower: bool = False,
    load_pretrained: bool = True,
) -> nn.Module:
    """The encoder named by ``kind``; its keyword arguments but the last are a checkpoint's ``text_args``.

    ``vocab``: the BPE ids the scratch encoder has rows for (unused by "open_clip"). ``train_tower``: fine-tune
    the open_clip tower rather than freeze it (ADR 0031; the default is what checkpoints before it hold; the
    scratch encoder is always trained and refuses it). ``load_pretrained``: not recorded; False when a
    checkpoint's own weights for a trained tower are loaded next (see ``OpenClipTextEncoder``).
    """
    if kind == "scratch":
        if train_tower:
            raise ValueError("train_tower applies to the open_clip tower; the scratch encoder is always trained")
        return ScratchTextEncoder(context_length=context_length, width=width, heads=heads, layers=layers, vocab=vocab)
    if kind == "open_clip":
        encoder = OpenClipTextEncoder(
            model_name=open_clip_model,
            pretrained=open_clip_pretrained,
            trainable=train_tower,
            load_pretrained=load_pretrained,
        )
        if encoder.context_length != context_length:
            raise ValueError(
                f"TEXT_CONTEXT_LENGTH={context_length} but open_clip {open_clip_model!r} was trained with "
                f"context length {encoder.context_length}; set TEXT_CONTEXT_LENGTH={encoder.context_length}"
            )
        return encoder
    raise ValueError(f"unknown text encoder kind {kind!r}; allowed: {', '.join(ENCODER_KINDS)}")


def tokenizer_for(text_args: dict) -> PromptTokenizer:
    """The tokenizer that matches an encoder built from ``text_args``."""
    model = text_args["open_clip_model"] if text_args["kind"] == "open_clip" else ""
    return PromptTokenizer(context_length=text_args["context_length"], open_clip_model=model)


def cache_fits(num_prompts: int, context_length: int, dim: int, budget_mb: float) -> bool:
    """Whether (num_prompts, context_length, dim) float32 embeddings fit in ``budget_mb`` MiB (ADR 0020)."""
    return num_prompts * context_length * dim * 4 <= budget_mb * 2**20


@torch.no_grad()
def encode_in_batches(encoder: nn.Module, tokens: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Embeddings (N, L, D) of N token rows, for caching the outputs of a frozen encoder once."""
    return torch.cat([encoder(tokens[i : i + batch_size]) for i in range(0, len(tokens), batch_size)])
