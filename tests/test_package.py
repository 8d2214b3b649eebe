"""The repo as a package: ``pip install .`` gives an importable ``ddpm`` whose ``Pipeline`` draws PIL images with a
checkpoint's own sampling settings (issue 42), from a run folder, a checkpoint or an export."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from in_process import one_line
from PIL import Image
from test_train_sample import ROOT

import sample
from ddpm import Pipeline
from ddpm.run import export as exporting
from ddpm.run.checkpoint import load_checkpoint, sampling_of
from ddpm.run.export import export

OLD_CKPT = os.path.join(ROOT, "tests", "data", "ckpt-format1-pre-layout.pt")


def test_the_installed_package_imports_and_its_pipeline_returns_pil_images(tmp_path):
    source, target = tmp_path / "source", tmp_path / "site"  # a copy: a build leaves build/ and *.egg-info behind
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", "runs", ".git", "__pycache__", "*.egg-info"))
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    assert (target / "ddpm" / "run" / "pipeline.py").exists() and not (target / "tests").exists()
    code = textwrap.dedent(f"""
        import ddpm
        from ddpm import Pipeline
        assert ddpm.__file__.startswith({str(target)!r}), ddpm.__file__
        pipe = Pipeline.from_pretrained({OLD_CKPT!r})
        images = pipe(["a red circle on a blue background", "a star"])
        print(type(images[0]).__name__, images[0].size, len(images), pipe.sampling.num_steps)
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "PYTHONPATH": str(target)},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    steps = sampling_of(load_checkpoint(OLD_CKPT)).num_steps
    assert run.stdout.split()[:4] == ["Image", "(8,", "8)", "2"] and run.stdout.split()[-1] == str(steps)


def test_the_pipeline_reads_a_run_folder_a_checkpoint_and_an_export_alike(tmp_path):
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    shutil.copy(OLD_CKPT, run / "ckpt-epoch0001-step0000002.pt")
    export(load_checkpoint(OLD_CKPT), str(tmp_path / "m.safetensors"), source=OLD_CKPT)
    prompts = ["a red circle on a blue background"] * 2
    outs = [
        Pipeline.from_pretrained(p, device="cpu")(prompts, output_type="pt", seed=3)
        for p in (tmp_path / "run", OLD_CKPT, tmp_path / "m.safetensors")
    ]
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    pipe = Pipeline.from_pretrained(OLD_CKPT)
    own = pipe(prompts, output_type="pt", seed=3)
    assert torch.equal(own, pipe.generate(prompts, seed=3, **sampling_of(load_checkpoint(OLD_CKPT)).as_dict()))
    other = pipe(prompts, output_type="pt", seed=3, guidance_scale=1.0, num_steps=2)
    assert not torch.equal(own, other)  # an override is used
    single = pipe("a red star", seed=3)
    assert len(single) == 1 and isinstance(single[0], Image.Image) and single[0].mode == "RGB"
    with pytest.raises(ValueError, match="STEPS=0"):
        pipe(prompts, num_steps=0)
    with pytest.raises(ValueError, match="output_type"):
        pipe(prompts, output_type="np")


def test_ckpt_may_be_a_run_folder_for_sample_and_export_as_for_the_pipeline(tmp_path, capsys, monkeypatch):
    """CKPT=runs/<run> takes the run's newest checkpoint that loads (a newer torn one is skipped, with a warning);
    a folder with none is one line naming it. (Before, make export and make sample said "no such checkpoint file".)"""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(OLD_CKPT, run / "checkpoints" / "ckpt-epoch0001-step0000002.pt")
    (run / "checkpoints" / "ckpt-epoch0002-step0000004.pt").write_bytes(b"torn")
    with pytest.warns(UserWarning, match="step0000004"):
        assert exporting.main(["--ckpt", str(run), "--out", str(tmp_path / "m.safetensors")]) == 0
    assert (tmp_path / "m.safetensors").exists() and "step 2" in capsys.readouterr().out
    monkeypatch.setenv("PROMPT", "a small star")
    with pytest.warns(UserWarning, match="step0000004"):
        sample.main(["--ckpt", str(run), "--n", "1", "--out", str(tmp_path / "a.png")])
    assert "ckpt-epoch0001-step0000002.pt" in capsys.readouterr().out and (tmp_path / "a.png").exists()
    (tmp_path / "empty").mkdir()
    assert exporting.main(["--ckpt", str(tmp_path / "empty")]) == 2
    assert "no checkpoint that loads in" in one_line(capsys.readouterr().err)
