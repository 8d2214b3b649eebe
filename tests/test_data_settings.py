"""The embedded dataset, the data guard, config validation and --set overrides."""

import pytest
import torch

import config
from ddpm.data.shapes import ATTRIBUTES, HELDOUT_PAIRS, all_combinations, caption, check_images, make_shapes_dataset
from ddpm.run.settings import config_from_module, parse_overrides, validate


def test_dataset_is_deterministic_in_range_and_captions_match_labels():
    a = make_shapes_dataset(size=40, seed=7, image_size=16)
    b = make_shapes_dataset(size=40, seed=7, image_size=16)
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert a.images.shape == (40, 3, 16, 16) and a.images.min() >= -1 and a.images.max() <= 1
    for i, text in enumerate(a.captions):
        words = {name: ATTRIBUTES[name][a.labels[name][i]] for name in ATTRIBUTES}
        assert text == caption(words["shape"], words["color"], words["background"], words["size"])
        assert words["color"] != words["background"]
    check_images(a.images, image_size=16)


def test_captions_use_an_before_a_vowel_and_parse_back():
    from ddpm.measure.prompts import parse_caption

    assert caption("circle", "red", "orange", "small") == "a small red circle on an orange background"
    assert caption("star", "orange", "blue", "large") == "a large orange star on a blue background"
    for combo in (("circle", "red", "orange", "small"), ("star", "orange", "blue", "large")):
        assert parse_caption(caption(*combo)) == combo


def test_heldout_pairs_never_in_training_split():
    train = {(s, c) for s, c, _, _ in all_combinations("train")}
    held = {(s, c) for s, c, _, _ in all_combinations("heldout")}
    assert held == set(HELDOUT_PAIRS) and not (train & held)
    data = make_shapes_dataset(size=200, seed=0, image_size=8, split="heldout")
    assert all(any(f"{c} {s}" in text for s, c in HELDOUT_PAIRS) for text in data.captions)


def test_foreground_pixels_have_the_named_colour():
    data = make_shapes_dataset(size=1, seed=3, image_size=32)
    img = ((data.images[0] + 1) * 127.5).round()  # (3, H, W)
    from ddpm.data.shapes import COLOR_NAMES, COLORS

    fg = torch.tensor(COLORS[COLOR_NAMES[data.labels["color"][0]]], dtype=torch.float32)
    bg = torch.tensor(COLORS[COLOR_NAMES[data.labels["background"][0]]], dtype=torch.float32)
    pixels = img.flatten(1).T
    assert ((pixels - fg).abs().sum(1) < 3).sum() > 20  # a solid shape of the caption's colour
    assert ((pixels - bg).abs().sum(1) < 3).sum() > 200


@pytest.mark.parametrize(
    "images,match",
    [
        (torch.rand(4, 3, 8, 8), r"scaled to \[0, 1\]"),
        (torch.rand(4, 3, 8, 8) * 255, r"must lie in \[-1, 1\]"),
        (torch.zeros(4, 3, 8, 8) - 0.5, "no contrast"),
        (torch.rand(4, 8, 8, 3) * 2 - 1, r"must be \(N, 3, 8, 8\)"),
    ],
)
def test_check_images_rejects_wrongly_scaled_data(images, match):
    with pytest.raises(ValueError, match=match):
        check_images(images, image_size=8)


def test_repo_config_is_valid():
    validate(config_from_module(config))


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("LEARNING_RATE", "1e-3", "LEARNING_RATE = '1e-3' \\(str\\): expected a number"),
        ("BATCH_SIZE", 0, "BATCH_SIZE = 0 \\(int\\): expected an int in \\[1"),
        ("BATCH_SIZE", True, "BATCH_SIZE = True \\(bool\\)"),
        ("IMAGE_SIZE", 33, "IMAGE_SIZE = 33: must be divisible by 2\\^2"),
        ("CAPTION_DROPOUT", 1.5, "CAPTION_DROPOUT = 1.5"),
        ("BETA_SCHEDULE", "quadratic", "one of 'linear', 'cosine'"),
        ("ATTENTION_RESOLUTIONS", (4,), "ATTENTION_RESOLUTIONS contains 4"),
        ("NUM_INFERENCE_STEPS", 2000, "NUM_INFERENCE_STEPS = 2000: must be ≤ 999 \\(TIMESTEPS = 1000 less one"),
        ("PROBE_NUM_STEPS", 1001, "PROBE_NUM_STEPS = 1001: the probe's DDIM takes ≤ TIMESTEPS = 1000"),
        ("GUIDANCE_SCALE", float("nan"), "GUIDANCE_SCALE = nan"),
    ],
)
def test_validation_names_key_value_and_allowed(key, value, match):
    cfg = {**config_from_module(config), key: value}
    with pytest.raises(ValueError, match=match):
        validate(cfg)


def test_dpm_solver_takes_one_step_fewer_than_timesteps():  # its table leaves out t = 0 (ADR 0045)
    for sampler in ("dpmpp2m", "dpmpp2m_sde"):
        cfg = {**config_from_module(config), "TIMESTEPS": 1000, "SAMPLER": sampler}
        validate({**cfg, "NUM_INFERENCE_STEPS": 999})
        with pytest.raises(ValueError, match="NUM_INFERENCE_STEPS = 1000: must be ≤ 999 .*less one for the DPM-Solver"):
            validate({**cfg, "NUM_INFERENCE_STEPS": 1000})
    validate({**cfg, "SAMPLER": "ddim", "NUM_INFERENCE_STEPS": 1000})  # DDIM's table ends at t = 0


def test_unknown_and_missing_keys_are_reported():
    cfg = config_from_module(config)
    cfg["LEARNIGN_RATE"] = 1e-3
    del cfg["SEED"]
    with pytest.raises(ValueError) as err:
        validate(cfg)
    assert "LEARNIGN_RATE: unknown key" in str(err.value) and "SEED: missing" in str(err.value)


def test_overrides_parse_literals_and_bare_words():
    assert parse_overrides(["LEARNING_RATE=2e-4", "BETA_SCHEDULE=linear", "CHANNEL_MULTS=(1, 2)"]) == {
        "LEARNING_RATE": 2e-4,
        "BETA_SCHEDULE": "linear",
        "CHANNEL_MULTS": (1, 2),
    }
    with pytest.raises(ValueError, match="unknown key"):
        parse_overrides(["LR=1"])
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_overrides(["LEARNING_RATE"])
