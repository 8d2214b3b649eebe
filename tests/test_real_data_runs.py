"""End to end on real datasets (ADR 0019, 0021): a few training steps, a sample, and the probe evaluation.

Subprocesses as in test_train_sample.py, with its TINY model; the data is built here (a folder of 4 repeated
captions, a 20-image CIFAR-10 in torchvision's pickle format).
"""

import json
import os
import subprocess
import sys

import pytest
from in_process import exits, one_line
from PIL import Image
from test_real_data import make_cifar
from test_train_sample import ROOT, TINY, sets

from train import main as train_main

CAPTIONS = ["a red square", "a blue square", "a green disc", "a white bar"]
COLOURS = [(220, 30, 30), (40, 70, 220), (30, 170, 50), (245, 245, 245)]


def run(script, *args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, *([os.path.join(ROOT, script)] if script.endswith(".py") else ["-m", script]), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture(scope="module")
def repeated_folder(tmp_path_factory):
    """40 images, 10 per caption (the finite-caption rule's minimum), sidecar captions."""
    root = tmp_path_factory.mktemp("folder")
    for i in range(40):
        k = i % 4
        img = Image.new("RGB", (12, 12), (15, 15, 15))
        img.paste(COLOURS[k], (2 + i % 3, 2, 9 + i % 3, 9) if k != 3 else (1, 5, 11, 7))
        img.save(root / f"{i:02d}.png")
        (root / f"{i:02d}.txt").write_text(CAPTIONS[k])
    return root


def train(runs, name, *extra):
    proc = run("train.py", "--run", name, "--runs-dir", str(runs), "--exploratory", *sets(*TINY), *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_folder_trains_samples_and_evaluates_with_its_caption_probe(tmp_path, repeated_folder):
    runs = tmp_path / "runs"
    proc = train(runs, "f", *sets("DATASET=folder", f"DATA_DIR={repeated_folder}", "EPOCHS=1", "EVAL_EVERY=1"))
    assert "caption probe: ceiling" in proc.stdout and "joint prompt accuracy" in proc.stdout
    info = json.loads((runs / "f" / "run.json").read_text())["provenance"]["data"]
    assert info["dataset"] == "folder" and info["size"] == 40 and info["skipped"] == 0 and info["cache_key"]
    prompts = (runs / "f" / "samples" / "prompts.txt").read_text().split("\n")
    assert set(prompts[:4]) == set(CAPTIONS)  # the grid asks for the dataset's own captions

    ckpt = sorted((runs / "f" / "checkpoints").glob("*.pt"))[-1]
    out = tmp_path / "s.png"
    proc = run("sample.py", "--prompt", "a red zebra square", "--n", "2", "--ckpt", str(ckpt), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "'zebra' never appeared" in proc.stdout and "'red'" not in proc.stdout.split("warning")[1]
    assert Image.open(out).size[0] > 16

    proc = run("ddpm.measure.evaluate", "--ckpt", str(ckpt), "--n", "2", "--steps", "2", "--sweep", "none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("accuracy=") and "ceiling=" in last and "fd=" in last, last
    assert sampled_with_progress(proc.stdout)
    result = json.loads((runs / "f" / "eval-dpmpp2m-sde-2" / "eval.json").read_text())  # 2 steps, not the run's 3
    assert json.loads((runs / "f" / "run.json").read_text())["eval_dpmpp2m_sde_2"]["accuracy"] == result["accuracy"]
    assert set(result["per_caption"]) == set(CAPTIONS) and 0 <= result["accuracy"] <= 1
    assert "Inception FID not computed" in proc.stderr or result["fid"] is None
    table = run("ddpm.decisions.runs", "--dir", str(runs)).stdout
    assert f"folder:{repeated_folder.name} n=40" in table


def test_cifar10_trains_and_samples_and_free_text_eval_is_skipped(tmp_path):
    data = make_cifar(tmp_path / "c")  # 20 images, 2 per class: too few for a caption probe
    runs = tmp_path / "runs"
    proc = train(runs, "c", *sets("DATASET=cifar10", f"DATA_DIR={data}", "IMAGE_SIZE=16", "EPOCHS=1", "EVAL_EVERY=1"))
    assert "in-training probe evaluation skipped" in proc.stdout
    assert json.loads((runs / "c" / "run.json").read_text())["provenance"]["data"]["dataset"] == "cifar10"
    ckpt = sorted((runs / "c" / "checkpoints").glob("*.pt"))[-1]
    proc = run(
        "sample.py", "--prompt", "a photo of a cat", "--n", "1", "--ckpt", str(ckpt), "--out", str(tmp_path / "c.png")
    )
    assert proc.returncode == 0 and "never appeared" not in proc.stdout, proc.stderr[-2000:]
    proc = run("ddpm.measure.evaluate", "--ckpt", str(ckpt), "--n", "1", "--steps", "2", "--sweep", "none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "accuracy=n/a (free-text captions) fd=" in proc.stdout
    assert sampled_with_progress(proc.stdout)


def sampled_with_progress(stdout: str) -> bool:
    """Whether `make eval` said how its sampling went, off a terminal: a line at the end at least (issue 42)."""
    return any(line.startswith("sampling at guidance ") and "done in" in line for line in stdout.splitlines())


def test_bad_data_exits_2_with_one_line(tmp_path, capsys):
    """In this process: the data is read before any work (train.py's command line: test_train_faults.py)."""
    code, err = exits(
        train_main,
        ["--runs-dir", str(tmp_path), "--exploratory", *sets(*TINY, "DATASET=cifar10", f"DATA_DIR={tmp_path}")],
        capsys,
    )
    assert code == 2 and "cifar-10-batches-py" in one_line(err) and "data_batch_1" in err
    code, err = exits(train_main, ["--runs-dir", str(tmp_path), *sets(*TINY, "DATASET=folder")], capsys)
    assert code == 2 and "DATA_DIR is empty" in one_line(err)


# ---- Hugging Face imagefolder layouts (issue 42, ADR 0052) ----------------------------------------------------
def imagefolder(root, *, split="train", table="jsonl", column="text", n=32):
    """``root/<split>/`` with n images in two subfolders and one metadata file at the split's top."""
    rows = []
    for i in range(n):
        rel = f"{'ab'[i % 2]}/{i:02d}.png"
        (root / split / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 12), COLOURS[i % 4]).save(root / split / rel)
        rows.append({"file_name": rel, column: CAPTIONS[i % 4]})
    if table == "jsonl":
        (root / split / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        (root / split / "metadata.csv").write_text(
            f"file_name,{column}\n" + "".join(f'{r["file_name"]},"{r[column]}"\n' for r in rows)
        )
    return root


@pytest.mark.parametrize(
    "table, column, split", [("jsonl", "text", "train"), ("csv", "caption", "train"), ("csv", "text", "validation")]
)
def test_imagefolder_layouts_train(tmp_path, table, column, split):
    data = imagefolder(tmp_path / "hub", split=split, table=table, column=column)
    imagefolder(data, split="test", n=8)  # another split beside it, never read
    runs = tmp_path / "runs"
    train(
        runs,
        "hf",
        *sets("DATASET=folder", f"DATA_DIR={data}", f"DATASET_SPLIT={split}", f"CAPTION_COLUMN={column}", "EPOCHS=1"),
    )
    info = json.loads((runs / "hf" / "run.json").read_text())["provenance"]["data"]
    assert info["size"] == 32 and info["skipped"] == 0 and info["data_dir"].endswith(os.sep + split)


def test_imagefolder_errors_name_the_file_and_the_line(tmp_path, capsys):
    data = imagefolder(tmp_path / "hub", table="csv", column="caption")
    code, err = exits(
        train_main, ["--runs-dir", str(tmp_path), *sets(*TINY, "DATASET=folder", f"DATA_DIR={data}")], capsys
    )  # the default column, text, is not the file's
    assert code == 2 and "metadata.csv:2" in one_line(err) and "'text'" in err and "caption" in err
    code, err = exits(
        train_main,
        ["--runs-dir", str(tmp_path), *sets(*TINY, "DATASET=folder", f"DATA_DIR={data}", "DATASET_SPLIT=test")],
        capsys,
    )
    assert code == 2 and "no folder for DATASET_SPLIT = 'test'" in one_line(err) and "train" in err
    code, err = exits(train_main, ["--runs-dir", str(tmp_path), *sets(*TINY, "DATASET_SPLIT=validation")], capsys)
    assert code == 2 and "DATASET = 'shapes' has the splits" in one_line(err)
