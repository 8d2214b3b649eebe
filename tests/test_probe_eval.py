"""The probe classifier and the evaluator: stand-in generators at the ceiling and at chance, the Fréchet
distance, the output files and the key=value line, the CLI end to end on a tiny checkpoint, FID's error path."""

import inspect
import json
import os
import re

import numpy as np
import pytest
import torch

from ddpm.data.shapes import ATTRIBUTES, all_combinations, caption
from ddpm.measure import distances, fid, report, scoring
from ddpm.measure import evaluate as ev
from ddpm.measure import prompts as pr
from ddpm.measure.probe import DEFAULT_SETTINGS, load_or_train_probe, load_probe, probe_path, save_probe, train_probe

SMALL = dict(train_size=1500, test_size=300, epochs=4)
KEY_VALUE_LINE = re.compile(r"^(\w+=(-?\d+(\.\d+)?(e[-+]\d+)?|nan))( \w+=(-?\d+(\.\d+)?(e[-+]\d+)?|nan))*$")


class RealStandIn:
    """A perfect generator: real renders of exactly the asked captions."""

    def __init__(self):
        self.calls = []

    def generate(self, prompts, *, guidance_scale, num_steps, sampler="ddim", eta=0.0, seed=0, batch_size=64):
        self.calls.append(
            dict(
                n=len(prompts), guidance_scale=guidance_scale, num_steps=num_steps, seed=seed, sampler=sampler, eta=eta
            )
        )
        return pr.render_real([pr.parse_caption(p) for p in prompts], 1, seed=seed + 99, image_size=32)


class NoiseStandIn:
    def generate(self, prompts, *, guidance_scale, num_steps, sampler="ddim", eta=0.0, seed=0, batch_size=64):
        return torch.rand(len(prompts), 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def small_probe():
    return train_probe(**SMALL)


def test_probe_learns_well_above_chance(small_probe):
    probe, info = small_probe
    acc = info["test_accuracy"]
    assert set(acc) == set(ATTRIBUTES) | {"joint"}
    for name, values in ATTRIBUTES.items():
        assert acc[name] > 1.0 / len(values) + 0.25, (name, acc)
    assert acc["joint"] > 0.2, acc  # chance is 1/640
    images = torch.rand(5, 3, 32, 32) * 2 - 1
    assert probe.features(images).shape == (5, DEFAULT_SETTINGS["feature_dim"])
    pred = probe.predict(images)
    assert set(pred) == set(ATTRIBUTES) and all(p.shape == (5,) and p.dtype == torch.long for p in pred.values())


def test_probe_cache_roundtrip_is_atomic_and_reused(small_probe, tmp_path, monkeypatch):
    probe, info = small_probe
    path = probe_path(str(tmp_path / ".probe"), info["settings"])
    assert re.search(r"probe-[0-9a-f]{12}\.pt$", path)
    assert probe_path("d", {**info["settings"], "epochs": 99}) != probe_path("d", info["settings"])
    save_probe(probe, info, path)
    assert os.listdir(tmp_path / ".probe") == [os.path.basename(path)]  # no temporary file left behind
    loaded, loaded_info = load_probe(path)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(loaded.features(x), probe.features(x))

    import ddpm.measure.probe as probe_mod

    monkeypatch.setattr(probe_mod, "train_probe", lambda *a, **k: pytest.fail("retrained despite a valid cache"))
    again, _ = load_or_train_probe(cache_dir=str(tmp_path / ".probe"), settings=info["settings"])
    torch.testing.assert_close(again.features(x), probe.features(x))


def test_prompts_are_fixed_and_split():
    seen, held = pr.eval_prompts()
    assert (seen, held) == pr.eval_prompts()
    assert len(seen) == pr.NUM_SEEN and len(held) == pr.NUM_HELDOUT
    assert set(seen) <= set(all_combinations("train")) and set(held) <= set(all_combinations("heldout"))
    for combo in seen + held:
        assert pr.parse_caption(caption(*combo)) == combo
    with pytest.raises(ValueError, match="not a shapes caption"):
        pr.parse_caption("a photo of a cat")


def test_frechet_distance_zero_for_itself_and_grows_with_shift():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.normal(size=(300, 16)))
    assert abs(distances.frechet_distance(a, a)) < 1e-6
    b = torch.from_numpy(rng.normal(size=(300, 16)))
    base = distances.frechet_distance(a, b)
    shifted = [distances.frechet_distance(a, b + s) for s in (0.5, 1.0, 2.0)]
    assert base < shifted[0] < shifted[1] < shifted[2]
    assert shifted[1] == pytest.approx(base + 16, rel=0.1)  # a mean shift of 1 per dim adds ≈ F
    assert distances.frechet_distance(a, 3 * a) > 10  # a change of scale, not of mean, is seen too
    f = torch.randn(3, 128)
    assert distances.frechet_distance(f, f) < 1e-6  # fewer samples than features: singular covariances are fine


def test_diversity():
    same = torch.ones(6, 4)  # 3 prompts × 2 identical samples
    assert distances.diversity(same, 2) == 0.0
    two = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert distances.diversity(two, 2) == pytest.approx(5.0)
    assert distances.diversity(two, 1) is None


def test_perfect_stand_in_scores_near_ceiling_and_noise_near_chance(small_probe, tmp_path):
    probe, _ = small_probe
    stand_in = RealStandIn()
    real = scoring.evaluate(
        stand_in, probe, n=2, guidance_scale=3.0, num_steps=1, sweep=[1.0, 3.0], log=lambda m: None, sampler="dpmpp2m"
    )
    assert {c["sampler"] for c in stand_in.calls} == {"dpmpp2m"} and real["settings"]["sampler"] == "dpmpp2m"
    noise = scoring.evaluate(NoiseStandIn(), probe, n=2, guidance_scale=3.0, num_steps=1, sweep=[], log=lambda m: None)
    ceiling = real["ceiling"]
    assert real["seen"]["joint"] == pytest.approx(ceiling["seen"]["joint"], abs=0.15)
    assert real["heldout"]["joint"] == pytest.approx(ceiling["heldout"]["joint"], abs=0.2)
    assert noise["seen"]["joint"] < 0.05 and noise["heldout"]["joint"] < 0.05
    assert np.mean([noise["seen"][a] for a in ATTRIBUTES]) < 0.5
    assert noise["fd"] > 5 * real["fd"] and noise["fd"] > 5 * real["fd_real"]
    assert len(real["sweep"]) == 2 and [r["guidance_scale"] for r in real["sweep"]] == [1.0, 3.0]

    paths = report.write_outputs(real, str(tmp_path / "eval"))
    for name in ("eval.json", "samples.png", "sweep.png", "sweep.md"):
        assert os.path.getsize(paths[name]) > 0
    data = json.loads(open(paths["eval.json"]).read())
    assert data["headline"]["joint_accuracy"] == real["seen"]["joint"] and "_images" not in data
    assert "| guidance |" in open(paths["sweep.md"]).read()

    line = scoring.headline_line(real["headline"])
    assert KEY_VALUE_LINE.match(line), line
    assert line.startswith("joint_accuracy=") and " ceiling=" in line and " heldout_joint_accuracy=" in line
    assert " fd=" in line and " diversity=" in line


def test_quick_eval(small_probe):
    probe, _ = small_probe
    pipe = RealStandIn()
    out = scoring.quick_eval(
        pipe,
        probe,
        prompts=["a large red circle on a blue background", ("star", "blue", "red", "small")],
        n=2,
        guidance_scale=2.0,
        num_steps=3,
        seed=5,
        sampler="dpmpp2m",
        eta=0.25,
    )
    assert pipe.calls == [dict(n=4, guidance_scale=2.0, num_steps=3, seed=5, sampler="dpmpp2m", eta=0.25)]
    for key in (
        "joint_accuracy",
        "shape_accuracy",
        "color_accuracy",
        "background_accuracy",
        "size_accuracy",
        "diversity",
        "fd",
    ):
        assert isinstance(out[key], float), key
    assert scoring.quick_eval(pipe, probe, n=1, num_steps=1)["diversity"] is None  # default prompts, one sample each


def test_the_probe_samples_at_its_own_settings_not_the_samples(monkeypatch):
    """train.py's probe reads PROBE_GUIDANCE_SCALE / PROBE_DDIM_ETA / PROBE_NUM_STEPS and samples with DDIM (ADR
    0047, 0059): the yardstick of steps to a target stays put when GUIDANCE_SCALE, DDIM_ETA, NUM_INFERENCE_STEPS
    or SAMPLER move. Flow matching, which has no DDIM, probes with its own sampler."""
    from ddpm.training import monitor as train  # the loop's probe point

    seen = {}
    monkeypatch.setattr(train, "quick_eval", lambda pipe, probe, **kw: seen.update(kw) or {"joint_accuracy": 0.5})
    cfg = dict(
        GUIDANCE_SCALE=3.0,
        DDIM_ETA=0.5,
        PROBE_GUIDANCE_SCALE=5.0,
        PROBE_DDIM_ETA=0.0,
        PROBE_NUM_STEPS=9,
        NUM_INFERENCE_STEPS=7,
        SAMPLER="dpmpp2m_sde",
        OBJECTIVE="ddpm",
        SEED=2,
    )
    writer = type("W", (), {"add_scalar": lambda self, *a: None})()
    assert train.evaluate(None, None, cfg, writer, step=10)["joint_accuracy"] == 0.5
    assert seen == dict(guidance_scale=5.0, eta=0.0, num_steps=9, sampler="ddim", seed=2)
    train.evaluate(None, None, {**cfg, "OBJECTIVE": "flow", "SAMPLER": "heun"}, writer, step=10)
    assert seen["sampler"] == "heun" and seen["num_steps"] == 9


def _tiny_checkpoint(path, raw_seed=None, image_size=32):
    """A randomly initialised checkpoint in this repo's format, small enough to sample in a second; with
    ``raw_seed``, its raw UNet's weights are its EMA UNet's plus noise of that seed (the output layer starts at
    zero, so another initialisation alone would sample the same images)."""
    from ddpm.model.text import build_text_encoder, tokenizer_for
    from ddpm.model.unet import UNet
    from ddpm.run.checkpoint import FORMAT_VERSION, save_atomic

    text_args = dict(
        kind="scratch",
        context_length=16,
        width=16,
        heads=2,
        layers=1,
        open_clip_model="ViT-B-32",
        open_clip_pretrained="",
    )
    if "vocab" in inspect.signature(build_text_encoder).parameters:
        tokens, mask = tokenizer_for(text_args)([caption(*c) for c in all_combinations("all")] + [""])
        text_args["vocab"] = tuple(sorted(set(tokens[mask].tolist())))
    unet_args = dict(
        image_size=image_size,
        in_channels=3,
        base_channels=8,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(16,),
        time_emb_dim=8,
        context_dim=16,
        attention_heads=2,
        norm_groups=4,
        dropout=0.0,
    )
    torch.manual_seed(0)
    unet, text = UNet(**unet_args), build_text_encoder(**text_args)
    raw = unet.state_dict()
    if raw_seed is not None:
        g = torch.Generator().manual_seed(raw_seed)
        raw = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in raw.items()}
    save_atomic(
        {
            "format": FORMAT_VERSION,
            "unet_args": unet_args,
            "text_args": text_args,
            "diffusion_args": dict(timesteps=20, schedule="cosine", beta_start=1e-4, beta_end=0.02),
            "sampling": dict(
                guidance_scale=3.0,
                num_steps=2,
                sampler="ddim",
                eta=0.0,
                clip_x0=True,
                precision="fp32",
                channels_last=False,
            ),
            "config": {"BASE_CHANNELS": 8, "GUIDANCE_SCALE": 2.0, "NUM_INFERENCE_STEPS": 2},
            "provenance": {},
            "unet": raw,
            "ema_unet": unet.state_dict(),
            "text_encoder": text.state_dict(),
            "ema_text_encoder": text.state_dict(),
            "step": 0,
            "epoch": 0,
        },
        str(path),
    )


def _tiny_run(small_probe, tmp_path, run_json: dict, raw_seed=None):
    """runs/r1 with one tiny checkpoint and its run.json, and the small probe saved beside: (run, ckpt, probe_file)."""
    probe, info = small_probe
    probe_file = str(tmp_path / "probe.pt")
    save_probe(probe, info, probe_file)
    run = tmp_path / "runs" / "r1"
    ckpt = run / "checkpoints" / "ckpt-epoch0001-step0000010.pt"
    _tiny_checkpoint(ckpt, raw_seed=raw_seed)
    (run / "run.json").write_text(json.dumps(run_json))
    return run, ckpt, probe_file


def test_cli_end_to_end_on_a_tiny_checkpoint(small_probe, tmp_path, capsys):
    run, ckpt, probe_file = _tiny_run(small_probe, tmp_path, {"name": "r1", "step": 10, "final_loss": float("nan")})

    rc = ev.main(
        ["--runs", str(tmp_path / "runs"), "--n", "2", "--sweep", "1,3", "--probe", probe_file], log=lambda m: None
    )
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert KEY_VALUE_LINE.match(lines[-1]), lines[-1]
    assert any(line.startswith("| guidance |") for line in lines)
    assert any(line.startswith("sampling at guidance 3: ") and "done in" in line for line in lines)  # off a terminal
    for name in ("eval.json", "samples.png", "sweep.png", "sweep.md"):
        assert (run / "eval" / name).stat().st_size > 0
    data = json.loads((run / "eval" / "eval.json").read_text())
    assert data["checkpoint"] == str(ckpt) and data["settings"]["n"] == 2
    assert data["settings"]["guidance_scale"] == 2.0 and data["settings"]["num_steps"] == 2  # the checkpoint's own
    assert len(data["sweep"]) == 2
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["step"] == 10 and np.isnan(run_json["final_loss"])  # the rest of run.json is kept as it was
    assert run_json["eval"]["joint_accuracy"] == data["headline"]["joint_accuracy"]
    assert not [p for p in os.listdir(run) if p.startswith(".tmp")]
    assert data["settings"]["sampler"] == "ddim"  # the checkpoint names none: DDIM, as before SAMPLER existed

    other = tmp_path / "dpm"
    assert (
        ev.main(
            [
                "--ckpt",
                str(ckpt),
                "--n",
                "2",
                "--sweep",
                "none",
                "--probe",
                probe_file,
                "--sampler",
                "dpmpp2m",
                "--out",
                str(other),
            ],
            log=lambda m: None,
        )
        == 0
    )
    data = json.loads((other / "eval.json").read_text())
    assert data["settings"]["sampler"] == "dpmpp2m"
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["eval_dpmpp2m_2"]["sampler"] == "dpmpp2m" and run_json["eval"]["sampler"] == "ddim"  # beside


def test_fid_for_folder_names_what_is_missing(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # as if not installed, whatever this machine has
    with pytest.raises(fid.FidUnavailableError) as err:
        fid.fid_for_folder(str(tmp_path), str(tmp_path))
    msg = str(err.value)
    assert "pip install torch-fidelity" in msg and fid.FID_WEIGHTS_FILE in msg and "checkpoints" in msg


def test_no_ema_evaluates_the_raw_weights_beside_the_ema_scores(small_probe, tmp_path, capsys):
    run, ckpt, probe_file = _tiny_run(small_probe, tmp_path, {"name": "r1", "step": 10}, raw_seed=1)
    common = ["--ckpt", str(ckpt), "--n", "2", "--sweep", "none", "--probe", probe_file]

    assert ev.main(common, log=lambda m: None) == 0
    assert ev.main(common + ["--no-ema"], log=lambda m: None) == 0
    ema, raw = (json.loads((run / d / "eval.json").read_text()) for d in ("eval", "eval-raw"))
    assert ema["use_ema"] is True and raw["use_ema"] is False
    assert raw["fd"] != ema["fd"]  # other weights, other samples: the flag reached the pipeline
    run_json = json.loads((run / "run.json").read_text())
    assert (
        run_json["eval"]["fd"] == ema["fd"] and run_json["eval_raw"]["fd"] == raw["fd"]
    )  # neither overwrote the other

    no_raw = tmp_path / "no-raw.pt"
    state = torch.load(ckpt, weights_only=True)
    del state["unet"]
    torch.save(state, no_raw)
    with pytest.raises(SystemExit) as stop:  # a clear refusal, not a report of missing keys
        ev.main(["--ckpt", str(no_raw), "--no-ema", "--sweep", "none", "--probe", probe_file], log=lambda m: None)
    assert stop.value.code == 2 and "holds no raw weights" in capsys.readouterr().err


def test_other_sampling_settings_are_scored_beside_the_runs_own(small_probe, tmp_path):
    run, ckpt, probe_file = _tiny_run(small_probe, tmp_path, {"name": "r1", "step": 10})
    common = ["--ckpt", str(ckpt), "--n", "2", "--sweep", "none", "--probe", probe_file]

    assert ev.main(common, log=lambda m: None) == 0  # the checkpoint's own: ddim, 2 steps, guidance 2
    assert ev.main(common + ["--sampler", "dpmpp2m", "--steps", "3"], log=lambda m: None) == 0
    assert ev.main(common + ["--guidance", "1", "--seed", "3"], log=lambda m: None) == 0
    assert ev.main(common + ["--eta", "1"], log=lambda m: None) == 0  # the checkpoint's own DDIM_ETA is 0
    for eta in ("0", "1"):  # the SDE solver takes η too: its two readings go side by side
        assert ev.main(common + ["--sampler", "dpmpp2m_sde", "--steps", "3", "--eta", eta], log=lambda m: None) == 0
    run_json = json.loads((run / "run.json").read_text())
    for key, sampler, steps, guidance, seed, eta in (
        ("eval", "ddim", 2, 2.0, 0, 0.0),
        ("eval_dpmpp2m_3", "dpmpp2m", 3, 2.0, 0, 0.0),
        ("eval_g1_seed3", "ddim", 2, 1.0, 3, 0.0),
        ("eval_eta1", "ddim", 2, 2.0, 0, 1.0),
        ("eval_dpmpp2m_sde_3", "dpmpp2m_sde", 3, 2.0, 0, 0.0),
        ("eval_dpmpp2m_sde_3_eta1", "dpmpp2m_sde", 3, 2.0, 0, 1.0),
    ):
        data = json.loads((run / key.replace("_", "-") / "eval.json").read_text())
        s = data["settings"]
        assert (s["sampler"], s["num_steps"], s["guidance_scale"], s["seed"], s["eta"]) == (
            sampler,
            steps,
            guidance,
            seed,
            eta,
        )
        assert run_json[key]["fd"] == data["headline"]["fd"]  # each study kept its own scores
    assert run_json["eval_eta1"]["fd"] != run_json["eval"]["fd"]  # η reached the sampler: other samples


def test_the_prompted_probability_comes_from_the_same_samples_and_orders_real_above_noise(small_probe):
    """The continuous signal (issue 40) is read off the very probe outputs the accuracy is: its argmax gives the
    accuracy, so the two cannot disagree about which images were scored; real renders of the prompts score above
    noise on every attribute."""
    from ddpm.measure.probe import prompted_probability
    from ddpm.measure.prompts import eval_prompts, labels_for, render_real
    from ddpm.measure.scoring import score

    probe, _ = small_probe
    combos = eval_prompts()[0][:6]
    real = render_real(combos, 4, seed=5, image_size=32)
    noise = torch.rand_like(real) * 2 - 1
    good, broken = score(probe, real, combos, 4), score(probe, noise, combos, 4)
    probs = probe.probabilities(real)
    assert all(torch.allclose(p.sum(1), torch.ones(len(real))) for p in probs.values())
    assert good == {**good, **prompted_probability(probs, labels_for(combos, 4))}
    assert good["joint"] == accuracy_of(probs, labels_for(combos, 4))
    for name in ATTRIBUTES:
        assert good[f"{name}_prob"] > broken[f"{name}_prob"], name
    assert good["prompt_prob"] > broken["prompt_prob"] and good["joint_prob"] > broken["joint_prob"]
    assert 0 <= broken["joint_prob"] <= broken["prompt_prob"] <= 1


def accuracy_of(probs, labels):
    return torch.stack([probs[k].argmax(1) == labels[k] for k in ATTRIBUTES]).all(0).float().mean().item()


def test_make_eval_reads_a_16_pixel_model_with_a_16_pixel_probe(small_probe, tmp_path, monkeypatch):
    """A 32-pixel probe reads 16-pixel renders near chance; make eval trains (and caches) one of the model's own
    size, whose ceiling is near the 32-pixel one's (issue 42)."""
    ckpt = tmp_path / "runs" / "r16" / "checkpoints" / "ckpt-epoch0001-step0000010.pt"
    _tiny_checkpoint(ckpt, image_size=16)
    asked = []

    def small(path, *, cache_dir, settings, log):  # the real thing at SMALL's sizes, so that the test is quick
        asked.append(settings)
        return load_or_train_probe(path, cache_dir=cache_dir, settings={**settings, **SMALL}, log=log)

    monkeypatch.setattr(ev, "load_or_train_probe", small)
    args = ["--ckpt", str(ckpt), "--n", "1", "--steps", "2"]
    assert ev.main(args, log=lambda m: None) == 0
    data = json.loads((tmp_path / "runs" / "r16" / "eval" / "eval.json").read_text())
    assert asked == [{"image_size": 16}] and data["probe"]["settings"]["image_size"] == 16
    seen = pr.eval_prompts()[0]
    renders_16 = pr.render_real(seen, 4, seed=1, image_size=16)
    wrong_size = scoring.score(small_probe[0], renders_16, seen, 4)["joint"]  # the 32-pixel probe on 16 pixels
    assert data["ceiling"]["seen"]["joint"] > max(0.3, 3 * wrong_size), (data["ceiling"]["seen"], wrong_size)
    for key in ("joint_accuracy", "heldout_joint_accuracy", "prompt_prob", "fd"):
        lo, hi = data["headline"]["ci"][key]
        assert lo <= data["headline"][key] <= hi, key  # every headline figure inside its interval
