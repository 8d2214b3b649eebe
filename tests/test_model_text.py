"""The UNet and the text encoders: shapes, conditioning, learning, and the pretrained open_clip path."""

import json

import open_clip
import pytest
import torch

from ddpm.model.diffusion import GaussianDiffusion
from ddpm.model.text import PromptTokenizer, build_text_encoder, encode_in_batches
from ddpm.model.unet import UNet, attention, timestep_embedding
from ddpm.run.hardware import CompiledOrEager


def test_timestep_embedding_shape_and_values():
    e = timestep_embedding(torch.tensor([0, 5]), 8)
    assert e.shape == (2, 8)
    assert torch.allclose(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # cos(0) = 1, sin(0) = 0


def test_unet_shapes_and_identity_start(tiny_unet_args):
    net = UNet(**tiny_unet_args)
    x, t = torch.randn(3, 3, 8, 8), torch.tensor([0, 10, 99])
    ctx, mask = torch.randn(3, 5, 16), torch.ones(3, 5, dtype=torch.bool)
    out = net(x, t, ctx, mask)
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # zero-initialised output conv: the first prediction is ε̂ = 0


def test_unet_output_depends_on_text_and_ignores_padding(tiny_unet_args):
    torch.manual_seed(0)
    net = UNet(**tiny_unet_args)
    for p in net.parameters():  # leave the zero-initialised start so that the conditioning shows
        torch.nn.init.normal_(p, std=0.2)
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([3])
    ctx, mask = torch.randn(1, 4, 16), torch.tensor([[True, True, False, False]])
    base = net(x, t, ctx, mask)
    padded = ctx.clone()
    padded[:, 2:] = 100.0  # masked positions must not matter
    assert torch.allclose(net(x, t, padded, mask), base, atol=1e-5)
    other = ctx.clone()
    other[:, 0] += 1.0
    assert not torch.allclose(net(x, t, other, mask), base, atol=1e-4)


def test_tiny_model_overfits_one_batch(tiny_unet_args):
    torch.manual_seed(0)
    net = UNet(**tiny_unet_args)
    d = GaussianDiffusion(timesteps=50, schedule="cosine", beta_start=1e-4, beta_end=0.02, prediction="epsilon")
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    ctx, mask = torch.randn(4, 3, 16), torch.ones(4, 3, dtype=torch.bool)
    t, noise = torch.randint(0, 50, (4,)), torch.randn(4, 3, 8, 8)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = d.loss_per_sample(net, x0, t, noise, ctx, mask).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first


def test_attention_in_bf16_matches_fp32_with_and_without_gradients():
    """Both routes for bf16 inputs (training: written out; sampling: the fused kernel) give fp32's answer and gradients."""
    g = torch.Generator().manual_seed(0)
    q32, k32, v32 = (torch.randn(2, 3, n, 8, generator=g) for n in (10, 6, 6))
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])[:, None, None, :]  # (B, 1, 1, L)
    leaves32 = [x.clone().requires_grad_() for x in (q32, k32, v32)]
    reference = torch.nn.functional.scaled_dot_product_attention(*leaves32, attn_mask=mask)
    reference.square().sum().backward()
    leaves16 = [x.to(torch.bfloat16).requires_grad_() for x in (q32, k32, v32)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(*leaves16, mask)
        with torch.no_grad():
            sampled = attention(*leaves16, mask)
    assert out.dtype == sampled.dtype == torch.bfloat16
    assert torch.allclose(out.float(), reference, atol=2e-2, rtol=2e-2)
    assert torch.allclose(sampled.float(), reference, atol=3e-2, rtol=3e-2)
    out.float().square().sum().backward()
    for got, want in zip(leaves16, leaves32):
        assert torch.allclose(got.grad.float(), want.grad, atol=5e-2, rtol=5e-2)
    padded = leaves16[2].detach().clone()
    padded[0, :, 4:] = 1e4  # masked keys of the first row must not matter
    with torch.autocast("cpu", dtype=torch.bfloat16):
        again = attention(leaves16[0], leaves16[1], padded.requires_grad_(), mask)
    assert torch.equal(again[0], out[0])


def test_compiled_unet_matches_eager(tiny_unet_args):
    """The default training forward (COMPILE, ADR 0013) gives eager's loss and gradients on this machine."""
    torch.manual_seed(0)
    net = UNet(**tiny_unet_args)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    d = GaussianDiffusion(timesteps=50, schedule="cosine", beta_start=1e-4, beta_end=0.02, prediction="epsilon")
    x0, ctx = torch.rand(4, 3, 8, 8) * 2 - 1, torch.randn(4, 3, 16)
    mask, t, noise = torch.ones(4, 3, dtype=torch.bool), torch.randint(0, 50, (4,)), torch.randn(4, 3, 8, 8)
    results = []
    for forward in (net, torch.compile(net)):
        net.zero_grad()
        loss = d.loss_per_sample(forward, x0, t, noise, ctx, mask).mean()
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in net.parameters()]))
    (eager_loss, eager_grads), (compiled_loss, compiled_grads) = results
    assert torch.allclose(compiled_loss, eager_loss, rtol=1e-4)
    for got, want in zip(compiled_grads, eager_grads):
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-3)


def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch):
    def broken_compile(module):
        def call(*args):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    warnings = []
    layer = torch.nn.Linear(3, 2)
    step = CompiledOrEager(layer, enabled=True, warn=warnings.append)
    x = torch.randn(4, 3)
    assert torch.equal(step(x), layer(x)) and torch.equal(step(x), layer(x))
    assert len(warnings) == 1 and "C++ compiler" in warnings[0] and "COMPILE" in warnings[0]
    assert torch.equal(CompiledOrEager(layer, enabled=False)(x), layer(x))


def test_compiled_errors_after_a_good_first_call_propagate():
    calls = []

    def flaky(*args):
        calls.append(args)
        if len(calls) > 1:
            raise ValueError("a real error")
        return args[0]

    step = CompiledOrEager(torch.nn.Identity(), enabled=False)
    step.compiled = flaky  # as if torch.compile had returned it
    assert step(torch.ones(1)).item() == 1
    with pytest.raises(ValueError, match="a real error"):
        step(torch.ones(1))


def test_tokenizer_masks_padding_and_warns_on_truncation():
    tok = PromptTokenizer(context_length=8)
    tokens, mask = tok(["a red circle", ""])
    assert tokens.shape == (2, 8) and mask.dtype == torch.bool
    assert mask[1].sum() == 2  # the empty prompt is [SOT, EOT]
    with pytest.warns(UserWarning, match="truncated"):
        tok(["a very long prompt " * 10])


def test_scratch_encoder_has_rows_only_for_its_vocabulary():
    tok = PromptTokenizer(context_length=8)
    tokens, mask = tok(["a red circle", "a blue square"])
    vocab = tuple(sorted(set(tokens[mask].tolist())))
    enc = build_text_encoder(
        kind="scratch",
        context_length=8,
        width=16,
        heads=2,
        layers=1,
        open_clip_model="",
        open_clip_pretrained="",
        vocab=vocab,
    )
    assert enc.net.token_embedding.num_embeddings == len(vocab) + 1
    assert enc(tokens).shape == (2, 8, 16)
    assert enc.unknown_words(tokens, mask) == 0
    new_tokens, new_mask = tok(["a green hexagon"])
    assert enc.unknown_words(new_tokens, new_mask) >= 2


def test_unknown_encoder_kind_is_named():
    with pytest.raises(ValueError, match="unknown text encoder kind 'bert'"):
        build_text_encoder(
            kind="bert", context_length=8, width=16, heads=2, layers=1, open_clip_model="", open_clip_pretrained=""
        )


def test_pretrained_open_clip_tower_loads_from_a_local_file(tmp_path):
    """The pretrained path, offline: save a randomly initialised open_clip model, load it by name + file."""
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (tmp_path / "tiny-test-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "tiny-test-clip.json")
    torch.manual_seed(0)
    source = open_clip.create_model("tiny-test-clip")
    weights = tmp_path / "tiny.pt"
    torch.save(source.state_dict(), weights)

    enc = build_text_encoder(
        kind="open_clip",
        context_length=12,
        width=0,
        heads=0,
        layers=0,
        open_clip_model="tiny-test-clip",
        open_clip_pretrained=str(weights),
    )
    assert enc.frozen and not any(p.requires_grad for p in enc.parameters())
    tokens, _ = PromptTokenizer(context_length=12, open_clip_model="tiny-test-clip")(["a red circle", ""])
    out = encode_in_batches(enc, tokens, batch_size=1)
    assert out.shape == (2, 12, 32)
    # The same computation as open_clip's own encode_text, before pooling and projection.
    x = source.token_embedding(tokens) + source.positional_embedding
    expected = source.ln_final(source.transformer(x, attn_mask=source.attn_mask))
    assert torch.allclose(out, expected, atol=1e-5)

    with pytest.raises(ValueError, match="TEXT_CONTEXT_LENGTH=16"):
        build_text_encoder(
            kind="open_clip",
            context_length=16,
            width=0,
            heads=0,
            layers=0,
            open_clip_model="tiny-test-clip",
            open_clip_pretrained=str(weights),
        )
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        build_text_encoder(
            kind="open_clip",
            context_length=12,
            width=0,
            heads=0,
            layers=0,
            open_clip_model="tiny-test-clip",
            open_clip_pretrained=str(tmp_path / "missing.pt"),
        )
