"""``python -m ddpm.measure.bench --quick`` end to end on tiny sizes, and the message when diffusers is missing."""

import re
import sys

import pytest

from ddpm.measure import bench, peer, timing, workload
from ddpm.run import hardware

LINE = re.compile(
    r"^train_speedup=\S+ eager_speedup=\S+ peak_fraction=\S+ sample64_s=\S+ ours_img_s=\S+ diffusers_img_s=\S+ min_per_1k_steps=\S+$"
)


def test_quick_bench_runs_end_to_end(tmp_path, capsys, monkeypatch):
    pytest.importorskip(
        "diffusers", reason="diffusers is a benchmark-only dependency: pip install -r requirements-bench.txt"
    )
    for module in (timing, hardware):  # an AVX2 CPU, whatever this one has ("auto" resolves through hardware's)
        monkeypatch.setattr(module, "bf16_is_native", lambda device: False)
    out = tmp_path / "bench.md"
    assert (
        bench.main(
            [
                "--quick",
                "--threads",
                "1",
                "--device",
                "cpu",
                "--out",
                str(out),
                "--runs",
                str(tmp_path),
                "--set",
                "BASE_CHANNELS=16",
                "--set",
                "BATCH_SIZE=64",
            ]
        )
        == 0
    )  # any config, validated
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert LINE.match(last), last
    values = dict(kv.split("=") for kv in last.split())
    assert all(float(v) > 0 for v in values.values()), values
    report = out.read_text()
    for heading in ("## Models", "## Matmul peak", "## Training throughput", "## Sampling", "quick run"):
        assert heading in report
    assert "{'BASE_CHANNELS': 16, 'BATCH_SIZE': 64}" in report and "'base_channels': 16" in report
    assert "| tf32 |" not in report and "TF32 is on" not in report  # a CPU has no TF32
    assert "| bf16 |" not in report and "bf16 not timed" in report  # emulated bf16 is not timed
    # 1,000 steps of the quick batch, 8 images, at ours_img_s:
    assert float(values["min_per_1k_steps"]) == pytest.approx(1000 * 8 / float(values["ours_img_s"]) / 60, rel=0.01)


def test_bf16_is_timed_only_where_it_is_native_or_asked_for(monkeypatch):
    cpu = timing.torch.device("cpu")
    monkeypatch.setattr(timing, "bf16_is_native", lambda device: False)
    assert timing.timed_precisions("fp32", cpu) == ("fp32",)
    assert timing.timed_precisions("bf16", cpu) == ("fp32", "bf16")  # PRECISION = "bf16" asks for it
    monkeypatch.setattr(timing, "bf16_is_native", lambda device: True)
    assert timing.timed_precisions("fp32", cpu) == ("fp32", "bf16")


def test_bench_refuses_a_bad_override_and_sizes_the_peak_per_device(capsys, tmp_path):
    assert bench.main(["--quick", "--out", str(tmp_path / "b.md"), "--set", "BASE_CHANNELS=0"]) == 2
    assert "BASE_CHANNELS = 0" in capsys.readouterr().err and not (tmp_path / "b.md").exists()
    assert timing.matmul_size(timing.torch.device("cpu"), quick=False) == 2048
    assert timing.matmul_size(timing.torch.device("cuda"), quick=False) == 8192  # 2048³ is below an H100's peak
    assert not bench.tf32_in_use(timing.torch.device("cpu"))


def test_diffusers_matches_our_unet_closely():
    pytest.importorskip(
        "diffusers", reason="diffusers is a benchmark-only dependency: pip install -r requirements-bench.txt"
    )
    cfg = bench.read_config(bench.REPO_ROOT / "config.py")
    args = workload.unet_args(cfg)
    ours, theirs = workload.UNet(**args), peer.build_diffusers(args)
    inputs = workload.make_inputs(
        1,
        image_size=args["image_size"],
        context_length=cfg["TEXT_CONTEXT_LENGTH"],
        context_dim=args["context_dim"],
        timesteps=cfg["TIMESTEPS"],
        device="cpu",
    )
    p_ours, p_theirs = workload.count_params(ours), workload.count_params(theirs)
    f_ours, f_theirs = workload.forward_flops(ours, inputs), workload.forward_flops(theirs, inputs)
    assert abs(p_theirs / p_ours - 1) < 0.15, (p_ours, p_theirs)
    assert abs(f_theirs / f_ours - 1) < 0.15, (f_ours, f_theirs)
    assert theirs(*inputs).shape == ours(*inputs).shape
    # AdaGN (ADR 0034) is the same switch in both: each grows by the same scale projections.
    plain, adagn = {**args, "scale_shift": False}, {**args, "scale_shift": True}
    grown = workload.count_params(workload.UNet(**adagn)) - workload.count_params(workload.UNet(**plain))
    assert grown > 0
    assert (
        workload.count_params(peer.build_diffusers(adagn)) - workload.count_params(peer.build_diffusers(plain)) == grown
    )


def test_missing_diffusers_names_the_way_out(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now raises ImportError
    assert bench.main(["--quick", "--out", str(tmp_path / "bench.md")]) == 2
    err = capsys.readouterr().err
    assert "requirements-bench.txt" in err and "make bench" in err
    assert not (tmp_path / "bench.md").exists()


def test_time_to_quality_curve_reads_the_newest_run(tmp_path):
    import json

    from ddpm.measure.bench_report import curve_markdown, quality_curve

    for name, started, accs in (
        ("old", "2026-01-01T00:00:00", [0.5, 0.95]),
        ("new", "2026-02-01T00:00:00", [0.2, 0.8, 0.92]),
    ):
        (tmp_path / name).mkdir()
        curve = [{"minutes": 2.0 * (i + 1), "step": 100 * (i + 1), "joint_accuracy": a} for i, a in enumerate(accs)]
        (tmp_path / name / "run.json").write_text(json.dumps({"started": started, "quality_curve": curve}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{not json")
    name, points, minutes = quality_curve(str(tmp_path))
    assert name == "new" and len(points) == 3 and minutes == 6.0
    assert "6.0 min" in curve_markdown(name, points, minutes)
    assert quality_curve(str(tmp_path / "broken")) == (None, [], None)
    assert "run `make train` first" in curve_markdown(None, [], None)


def test_profile_kinds_and_quick_report(tmp_path, capsys):
    from ddpm.measure import profiling

    kinds = {
        "aten::convolution_backward": "convolution",
        "aten::_softmax_backward_data": "attention",
        "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
        "aten::bmm": "attention",
        "aten::addmm": "linear layers",
        "aten::mm": "linear layers",
        "Optimizer.step#AdamW.step": "optimizer",
        "aten::native_group_norm_backward": "normalisation",
        "aten::silu": "element-wise",
        "aten::upsample_nearest2d": "element-wise",
        "aten::empty_strided": "other",
    }
    assert {name: profiling.kind_of(name) for name in kinds} == kinds
    out = tmp_path / "profile.md"
    assert profiling.main(["--quick", "--out", str(out)]) == 0
    shares = dict(kv.split("=") for kv in capsys.readouterr().out.strip().splitlines()[-1].split())
    for prefix in ("train", "sample"):
        mine = {k: float(v) for k, v in shares.items() if k.startswith(prefix + "_")}
        assert (
            abs(sum(mine.values()) - 1) < 0.01 and mine[f"{prefix}_convolution"] > 0 and mine[f"{prefix}_attention"] > 0
        )
    assert "train_optimizer" in shares and "sample_optimizer" not in shares  # sampling takes no optimizer step
    report = out.read_text()
    assert "## Training step" in report and "## Sampling step" in report and "Top 10 operators" in report
