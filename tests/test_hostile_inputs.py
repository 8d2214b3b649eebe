"""Input that must never run, nor write, anything the user did not ask for: the second fault sweep (issue 38),
items 1-5, 9, 12, 16, 17 and 23: a data file, a make variable, a run name, a caption file, a sample's default path.

Each test injects the fault the sweep found and checks that nothing ran, nothing was written outside the folder
the user named, and the answer is one line (exit code 2 for bad input).
"""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from in_process import exits, one_line
from PIL import Image
from test_train_sample import ROOT, TINY, sets

import sample
import train
from ddpm.data import cifar10, folder
from ddpm.data.load import DataError, load_dataset

VENV_PY = os.path.join(ROOT, ".venv", "bin", "python")
OLD_CKPT = os.path.join(ROOT, "tests", "data", "ckpt-format1-pre-layout.pt")  # a tiny checkpoint of ADR 0013's day


def make(*args, timeout=300):
    if not os.path.exists(VENV_PY):
        pytest.skip("the make targets need the .venv that make test creates")
    return subprocess.run(
        ["make", "-s", "-C", ROOT, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k not in ("PROMPT", "DDPM_ARGS")},
    )


# ---- item 1: a CIFAR-10 pickle that asks to run code ----------------------------------------------------------
class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class Codec:
    def __reduce__(self):
        import _codecs

        return _codecs.encode, ("x", "rot13")


def write_cifar(root, n=12, *, batch_1=None):
    """A CIFAR-10 folder in torchvision's layout with n images per batch (Python 3 pickles, as the real ones read)."""
    base = root / cifar10.BASE
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        batch = {
            "batch_label": "training batch",
            "labels": [int(x) for x in rng.integers(0, 10, n)],
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [b"x.png"] * n,
        }
        (base / f"data_batch_{i}").write_bytes(pickle.dumps(batch_1 if i == 1 and batch_1 is not None else batch))
    meta = {
        "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        "num_cases_per_batch": n,
        "num_vis": 3072,
    }
    (base / "batches.meta").write_bytes(pickle.dumps(meta))
    return root


def test_a_cifar_pickle_that_asks_to_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    root = write_cifar(tmp_path / "cifar", batch_1={"data": Payload(marker), "labels": [0]})
    with pytest.raises(DataError) as err:
        load_dataset(dataset="cifar10", data_dir=str(root), image_size=32, batch_size=4, cache_dir=str(tmp_path / "c"))
    assert not marker.exists()
    message = str(err.value)
    assert "data_batch_1" in message and "posix.system" in message and "\n" not in message


def test_cifar_batches_in_the_format_still_load_and_official_sizes_are_checked(tmp_path):
    root = write_cifar(tmp_path / "cifar", n=12)
    loaded = load_dataset(
        dataset="cifar10", data_dir=str(root), image_size=32, batch_size=4, cache_dir=str(tmp_path / "c")
    )
    assert len(loaded.images) == 60 and loaded.captions[0].startswith("a photo of a")
    assert loaded.info["md5"] == "not the official files (12 images a batch): not checked"
    bad = write_cifar(tmp_path / "official-size", n=cifar10.OFFICIAL_BATCH)  # the official count, other bytes
    with pytest.raises(cifar10.CifarMissing, match="MD5 of data_batch_1, .* differs from torchvision's"):
        cifar10.load(str(bad), "a photo of {}")


def test_the_restricted_unpickler_admits_only_what_the_format_holds():
    for allowed in ({b"a": [1, 2.5, "s", b"b", None, True]}, np.arange(6, dtype=np.uint8).reshape(2, 3)):
        loaded = cifar10.safe_loads(pickle.dumps(allowed, protocol=2))
        assert repr(loaded) == repr(allowed)
    for refused, name in (
        (Payload("x"), "posix.system"),
        (ValueError("x"), "builtins.ValueError"),
        (np.array([object()]), "builtins.object"),
        (Codec(), "codec 'rot13'"),
    ):
        with pytest.raises(pickle.UnpicklingError, match=name):
            cifar10.safe_loads(pickle.dumps(refused))


# ---- item 2: make variables are data ------------------------------------------------------------------------
def hostile(folder):
    """A value that runs ``touch`` if make or the shell interprets it, in each way they could."""
    return (
        f'"; touch {folder}/pwned-q; " $(shell touch {folder}/pwned-m) `touch {folder}/pwned-b` '
        f"$$(touch {folder}/pwned-d) ' x"
    )


def test_no_make_variable_runs_anything(tmp_path):
    bad = hostile(tmp_path)
    names = ["CKPT", "OUT", "N", "GUIDANCE", "STEPS", "SAMPLER", "ETA", "SEED", "PROMPT", "ARGS"]
    proc = make("sample", *[f"{name}={bad}" for name in names])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for target, variables in (
        ("export", ["CKPT", "OUT"]),
        ("sweep", ["SPEC", "ARGS"]),
        ("eval", ["CKPT", "ARGS"]),
        ("adr", ["TITLE", "FROM", "SUPERSEDES"]),
        ("compare", ["SWEEPS"]),
    ):
        proc = make(target, *[f"{name}={bad}" for name in variables], f"NPROC=$(shell touch {tmp_path}/pwned-n)")
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, (target, proc.stderr[-2000:])
    assert not [p for p in os.listdir(tmp_path) if p.startswith("pwned")]


def test_a_file_name_with_quotes_and_dollars_simply_works(tmp_path):
    ckpt = tmp_path / "it's $HOME `x` $(y).pt"
    ckpt.write_bytes(open(OLD_CKPT, "rb").read())
    out = tmp_path / f'o"; touch {tmp_path}/pwned; ".safetensors'
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = make("export", f"CKPT={ckpt}", f"OUT={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.exists() and out.with_suffix(".json").exists() and not (tmp_path / "pwned").exists()


def test_make_args_are_split_as_a_shell_would_and_never_run(monkeypatch):
    from ddpm.cli import command_line

    monkeypatch.setattr(sys, "argv", ["train.py", "--run", "a"])
    monkeypatch.setenv("DDPM_ARGS", "--set CIFAR10_CAPTION='a photo of {}' $(touch x) `y`")
    assert command_line() == ["--run", "a", "--set", "CIFAR10_CAPTION=a photo of {}", "$(touch", "x)", "`y`"]
    assert "DDPM_ARGS" not in os.environ  # read once: a command's subprocesses do not take it as theirs
    assert command_line(["--given"]) == ["--given"]


# ---- item 3: a run name is a name, not a path ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../x", "/tmp/elsewhere", "a/b", "..", ".", ".hidden", ""])
def test_a_run_name_that_leaves_the_runs_folder_is_refused(name, tmp_path, capsys):
    for flag in ("--run", "--resume"):
        code, err = exits(train.main, ["--runs-dir", str(tmp_path / "runs"), flag, name, *sets(*TINY)], capsys)
        assert code == 2 and "one folder name" in one_line(err), err
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()


# ---- item 4: a sample of an export lands beside it, not in the repo's parent --------------------------------
def test_the_default_sample_path_stays_beside_a_loose_checkpoint(tmp_path):
    loose = tmp_path / "models" / "base.safetensors"
    assert sample.default_out(str(loose), "a red star").startswith(str(tmp_path / "models") + os.sep)
    in_run = tmp_path / "runs" / "r" / "checkpoints" / "ckpt-epoch0001-step0000004.pt"
    assert os.path.dirname(sample.default_out(str(in_run), "x")) == str(tmp_path / "runs" / "r" / "samples")


# ---- items 5, 9, 12, 16: a folder's odd files -----------------------------------------------------------------
def image(path, colour=(255, 0, 0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def load_folder(root, tmp_path, **kw):
    return load_dataset(
        dataset="folder", data_dir=str(root), image_size=8, batch_size=1, cache_dir=str(tmp_path / "cache"), **kw
    )


def test_a_caption_file_linked_outside_the_folder_is_not_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0 the secret")
    root = tmp_path / "data"
    image(root / "a.png")
    (root / "a.txt").symlink_to(secret)
    image(root / "b.png")
    (root / "b.txt").write_text("a blue thing")
    inside = root / "captions" / "c.txt"
    inside.parent.mkdir()
    inside.write_text("a green thing")
    image(root / "c.png")
    (root / "c.txt").symlink_to(inside)  # a link that stays inside the folder is followed
    loaded = load_folder(root, tmp_path)
    assert loaded.captions == ["a blue thing", "a green thing"]
    assert not any("secret" in c for c in loaded.captions)
    assert [r["path"] for r in loaded.report] == [str(root / "a.txt")] and "outside" in loaded.report[0]["reason"]


def test_duplicate_file_names_in_metadata_name_both_lines(tmp_path):
    root = tmp_path / "data"
    image(root / "a.png")
    (root / "metadata.jsonl").write_text(
        '{"file_name": "a.png", "text": "one"}\n\n{"file_name": "./a.png", "text": "two"}\n'
    )
    with pytest.raises(DataError) as err:
        load_folder(root, tmp_path)
    assert "metadata.jsonl:3" in str(err.value) and "line 1" in str(err.value) and "a.png" in str(err.value)


def test_a_fifo_and_broken_links_named_png_are_skipped_not_waited_on(tmp_path):
    root = tmp_path / "data"
    for name, colour in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        image(root / f"{name}.png", colour)
        (root / f"{name}.txt").write_text(f"a {name}")
    os.mkfifo(root / "fifo.png")  # opening it for reading would wait for a writer forever
    (root / "dangling.png").symlink_to(root / "gone.png")
    (root / "loop.png").symlink_to(root / "loop.png")
    loaded = load_folder(root, tmp_path)
    assert loaded.captions == ["a a", "a b"]
    reasons = {os.path.basename(r["path"]): r["reason"] for r in loaded.report}
    assert set(reasons) == {"fifo.png", "dangling.png", "loop.png"}
    assert "not a regular file" in reasons["fifo.png"] and "link" in reasons["dangling.png"]
    with pytest.raises(DataError, match="dangling.png: not read: a dangling link"):  # the first, in sorted order
        load_folder(root, tmp_path, bad_files="stop")


def test_the_listing_classifies_without_opening(tmp_path):
    os.mkfifo(tmp_path / "x.png")
    good, bad = folder.list_images(str(tmp_path))
    assert good == [] and [b.path for b in bad] == [str(tmp_path / "x.png")]


# ---- items 7, 14, 15, 17: the decode cache -------------------------------------------------------------------
def two_images(tmp_path):
    root = tmp_path / "data"
    for name, colour in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
        image(root / f"{name}.png", colour)
        (root / f"{name}.txt").write_text(f"a {name}")
    return root


def only_entry(tmp_path):
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    return entry


def test_a_cache_whose_pixels_were_overwritten_is_rebuilt_not_trained_on(tmp_path):
    root = two_images(tmp_path)
    first = load_folder(root, tmp_path)
    good = first.images.rows(torch.arange(2)).clone()
    npy = only_entry(tmp_path) / "images.npy"
    blob = bytearray(npy.read_bytes())
    blob[-10:] = bytes(10)  # the same size, other pixels
    npy.write_bytes(bytes(blob))
    logged = []
    again = load_folder(root, tmp_path, log=logged.append)
    assert again.info["cache"] == "built" and any("damaged" in line for line in logged)
    assert (again.images.rows(torch.arange(2)) == good).all()


def test_an_image_edited_in_place_with_its_time_put_back_is_decoded_again(tmp_path):
    root = two_images(tmp_path)
    path = image(root / "a.bmp", (255, 0, 0))  # uncompressed: another colour is the same number of bytes
    os.rename(root / "a.txt", root / "a.txt.bak")
    os.remove(root / "a.png")
    os.rename(root / "a.txt.bak", root / "a.txt")
    load_folder(root, tmp_path)
    stat = path.stat()
    before = path.read_bytes()
    image(path, (0, 255, 0))
    assert len(path.read_bytes()) == len(before)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = load_folder(root, tmp_path)
    assert again.info["cache"] == "built" and again.images.rows(torch.arange(1))[0, 1].mean() > 0.9  # green now


def test_a_truncated_cache_is_rebuilt_at_the_next_start(tmp_path):
    root = two_images(tmp_path)
    load_folder(root, tmp_path)
    npy = only_entry(tmp_path) / "images.npy"
    npy.write_bytes(npy.read_bytes()[:100])
    again = load_folder(root, tmp_path)
    assert again.info["cache"] == "built" and len(again.images) == 2
    assert load_folder(root, tmp_path).info["cache"] == "reused"


def test_a_disk_that_fills_while_the_cache_is_built_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    from ddpm.data import cache

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cache.os, "posix_fallocate", full)
    with pytest.raises(DataError) as err:
        load_folder(two_images(tmp_path), tmp_path)
    assert "cannot write the decode cache" in str(err.value) and "no space left on device" in str(err.value)
    assert "\n" not in str(err.value) and os.listdir(tmp_path / "cache") == []


def test_a_decode_cache_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    import errno

    from ddpm.data import cache

    root = two_images(tmp_path)
    if os.geteuid() == 0:  # root writes into read-only folders: inject what a read-only mount answers

        def read_only(*a, **k):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(cache.tempfile, "mkdtemp", read_only)
    else:
        (tmp_path / "cache").mkdir()
        (tmp_path / "cache").chmod(0o555)
    with pytest.raises(DataError, match="cannot write the decode cache .* pass another --runs-dir"):
        load_folder(root, tmp_path)


# ---- item 23: a seed torch cannot take ----------------------------------------------------------------------
def test_a_seed_past_what_torch_takes_is_refused_at_start(tmp_path, capsys):
    code, err = exits(train.main, ["--runs-dir", str(tmp_path), *sets(*TINY, "SEED=100000000000000000000")], capsys)
    assert code == 2 and "SEED = 100000000000000000000" in err and "2**64 - 1" in err  # what torch's generator takes
    assert not any(tmp_path.iterdir())


# ---- a sweep of our own after the fixes: the cases that still got through --------------------------------------
def test_a_file_name_with_a_newline_keeps_the_report_one_line_per_file(tmp_path):
    root = tmp_path / "data"
    for name in ("a", "b"):
        image(root / f"{name}.png")
        (root / f"{name}.txt").write_text(f"a {name}")
    (root / "x\ny\tz.png").write_bytes(b"")  # a zero-byte image whose name would split the report's line
    loaded = load_folder(root, tmp_path)
    assert loaded.captions == ["a a", "a b"]
    loaded.write_report(str(tmp_path))
    lines = (tmp_path / "data_report.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skipped\t") and "x\\ny\\tz.png" in lines[0], lines


def test_an_adr_title_with_a_newline_writes_nothing(tmp_path):
    from ddpm.decisions.scaffold import new_adr

    (tmp_path / "0001-first.md").write_text("# 1. First\n\nStatus: Accepted\n")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError, match="one line of text"):
        new_adr("a title\n## Decision\nEVIL = 1", decisions_dir=tmp_path, config_path=os.path.join(ROOT, "config.py"))
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("nproc", ["abc", "0", "4; touch {d}/pwned", "$(shell touch {d}/pwned)"])
def test_make_train_takes_only_a_process_count_for_nproc(nproc, tmp_path):
    proc = make("train", "NPROC=" + nproc.format(d=tmp_path), f"ARGS=--runs-dir {tmp_path}")
    assert proc.returncode == 2 and "is not a process count" in proc.stderr and "Traceback" not in proc.stderr
    assert os.listdir(tmp_path) == []  # neither a run nor the marker


def test_a_prompt_that_is_not_a_string_is_a_type_error_naming_it():
    from ddpm.run.pipeline import Pipeline

    pipe = Pipeline.from_checkpoint(OLD_CKPT)
    with pytest.raises(TypeError, match="prompt 1 is None"):
        pipe.generate(["a red circle", None])
