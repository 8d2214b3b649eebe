"""Real datasets (ADR 0019): every image mode, both caption layouts, every bad input, the decode cache, CIFAR-10.

Each test builds its own tiny data in tmp_path; nothing is downloaded.
"""

import codecs
import io
import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm.data import cache, cifar10, folder, images
from ddpm.data.images import BadFile, decode
from ddpm.data.load import DataError, Images, load_dataset

WHITE = (255, 255, 255)


def dec(path, size=4, resize="crop", background=WHITE):
    return decode(str(path), size=size, resize=resize, background=background)


def save(img, path, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


# ---- image modes ----------------------------------------------------------------------------------------
def test_grey_and_alpha_modes_composite_on_the_background(tmp_path):
    grey = dec(save(Image.new("L", (4, 4), 100), tmp_path / "l.png"))
    assert grey.shape == (3, 4, 4) and grey.dtype == np.uint8 and (grey == 100).all()
    clear = dec(save(Image.new("LA", (4, 4), (0, 0)), tmp_path / "la.png"))  # fully transparent black
    assert (clear == 255).all()  # becomes the white background, not black
    half = dec(save(Image.new("RGBA", (4, 4), (0, 0, 0, 128)), tmp_path / "rgba.png"), background=(0, 0, 200))
    assert (half[0] == 0).all() and abs(int(half[2, 0, 0]) - 100) <= 1  # alpha 0.5 over blue
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal = dec(save(p, tmp_path / "p.png", transparency=1))  # palette index 1 (red) is transparent
    assert (pal == 255).all()


def test_cmyk_and_16_bit_grey_are_scaled_not_clipped(tmp_path):
    cmyk = dec(save(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), tmp_path / "c.jpg", quality=100))
    assert cmyk[0].mean() > 200 and cmyk[1].mean() < 60  # red
    ramp = np.array([[0, 16384, 32768, 65535]] * 4, dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(ramp).save(path)  # Pillow writes a 16-bit greyscale PNG
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    out = dec(path, resize="pad")
    assert out[0, 0].tolist() == [0, 64, 128, 255]  # 65535 → 255, not everything past 255 → white


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (4, 2), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 1, 2))  # the left column red, landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the left column becomes the top row
    out = dec(save(img, tmp_path / "r.png", exif=exif), size=4, resize="pad", background=(0, 0, 255))
    assert out[0, 0, 1:3].tolist() == [255, 255] and out[0, 3, 1:3].tolist() == [0, 0]  # portrait 2×4, red on top
    assert (out[2, :, 0] == 255).all()  # padded left and right: it is portrait now


def test_resize_policies(tmp_path):
    wide = Image.new("RGB", (8, 4), (0, 0, 0))
    wide.paste((255, 0, 0), (0, 0, 2, 4))  # a red strip on the left quarter
    path = save(wide, tmp_path / "w.png")
    crop, pad = dec(path, size=4, resize="crop"), dec(path, size=4, resize="pad", background=(0, 0, 255))
    assert crop[0, :, 0].max() < 100  # the centre square drops the strip
    assert (pad[2, 0] == 255).all() and (pad[2, -1] == 255).all()  # padded rows above and below are blue
    with pytest.raises(ValueError):
        images.fit(wide, 4, "stretch", WHITE)


# ---- bad images -----------------------------------------------------------------------------------------
def bad_images(root):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(buf, format="PNG")
    (root / "truncated.png").write_bytes(buf.getvalue()[:60])
    (root / "text.png").write_text("this is not a png\n")
    for name in ("truncated", "text"):
        (root / f"{name}.txt").write_text("a caption")


def test_bad_images_raise_badfile_naming_the_path(tmp_path, monkeypatch):
    bad_images(tmp_path)
    for name in ("truncated.png", "text.png"):
        with pytest.raises(BadFile) as err:
            dec(tmp_path / name)
        assert err.value.path.endswith(name)
    save(Image.new("RGB", (64, 64)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > 2× the limit: Pillow's bomb error
    with pytest.raises(BadFile, match="decompression-bomb"):
        dec(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # between 1× and 2×: Pillow only warns; we refuse
    with pytest.raises(BadFile, match="decompression-bomb"):
        dec(tmp_path / "bomb.png")


# ---- captions -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw, text, note",
    [
        ("a café\n".encode(), "a café", None),
        (codecs.BOM_UTF8 + "a  café".encode(), "a café", None),
        (codecs.BOM_UTF16_LE + "a café".encode("utf-16-le"), "a café", None),
        (codecs.BOM_UTF16_BE + "a café".encode("utf-16-be"), "a café", None),
        ("a café".encode("latin-1"), "a café", "caption is not UTF-8; read as latin-1"),
    ],
)
def test_caption_bytes_decode(raw, text, note):
    assert folder.decode_caption(raw, "x.txt") == (text, note)


@pytest.mark.parametrize("raw", ["a cat".encode("utf-16-le"), b"\x00\x01\x02binary", codecs.BOM_UTF16_LE + b"\x00\xd8"])
def test_undecodable_caption_bytes_are_refused(raw):
    with pytest.raises(BadFile):
        folder.decode_caption(raw, "x.txt")


def make_folder(root, n=8, layout="sidecar", captions=None):
    """n small RGB images with captions, in the sidecar or metadata.jsonl layout (nested one level)."""
    lines = []
    for i in range(n):
        rel = os.path.join(f"sub{i % 2}", f"img{i:03d}.png")
        save(Image.new("RGB", (6, 4), (i * 20 % 256, 255 - i * 20 % 256, 90)), root / rel)
        text = captions[i] if captions else f"picture number {i}"
        if layout == "sidecar":
            (root / rel).with_suffix(".txt").write_text(text)
        else:
            lines.append(json.dumps({"file_name": rel, "text": text}))
    if lines:
        (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def load(root, tmp_path, **kw):
    args = dict(
        dataset="folder",
        data_dir=str(root),
        image_size=8,
        batch_size=2,
        cache_dir=str(tmp_path / "cache"),
        log=lambda msg: None,
    )
    return load_dataset(**{**args, **kw})


@pytest.mark.parametrize("layout", ["sidecar", "metadata"])
def test_folder_layouts_give_images_and_captions(tmp_path, layout):
    root = make_folder(tmp_path / "d", layout=layout)
    (root / ".DS_Store").write_bytes(b"\0junk")
    (root / "sub0" / "._img000.png").write_bytes(b"\0mac fork")
    (root / "notes.md").write_text("not an image")
    d = load(root, tmp_path)
    assert len(d.images) == 8 and d.info["skipped"] == 0 and d.report == []
    assert sorted(d.captions) == sorted(f"picture number {i}" for i in range(8))
    x = d.images[torch.arange(8)]
    assert x.shape == (8, 3, 8, 8) and x.min() >= -1 and x.max() <= 1


def test_sidecar_wins_over_metadata_and_txt_over_caption(tmp_path):
    root = make_folder(tmp_path / "d", n=2, layout="metadata")
    (root / "sub0" / "img000.caption").write_text("from the caption file")
    (root / "sub1" / "img001.caption").write_text("from the caption file")
    (root / "sub1" / "img001.txt").write_text("from the txt file")
    d = load(root, tmp_path)
    assert d.captions == ["from the caption file", "from the txt file"]


def test_bad_inputs_are_skipped_into_the_report_or_stop_the_run(tmp_path):
    root = make_folder(tmp_path / "d", n=4)
    bad_images(root)
    save(Image.new("RGB", (4, 4)), root / "nocaption.png")
    save(Image.new("RGB", (4, 4)), root / "empty.png")
    (root / "empty.txt").write_text("  \n")
    save(Image.new("RGB", (4, 4)), root / "utf16.png")
    (root / "utf16.txt").write_bytes("a cat".encode("utf-16-le"))
    save(Image.new("RGB", (4, 4)), root / "latin.png")
    (root / "latin.txt").write_bytes("a café".encode("latin-1"))
    d = load(root, tmp_path)
    skipped = {os.path.basename(r["path"]): r["reason"] for r in d.report if r["skipped"]}
    assert set(skipped) == {"truncated.png", "text.png", "nocaption.png", "empty.txt", "utf16.txt"}
    assert d.info["skipped"] == 5 and len(d.images) == 5 and "a café" in d.captions  # latin-1: kept, noted
    assert any(not r["skipped"] and r["path"].endswith("latin.txt") for r in d.report)
    d.write_report(str(tmp_path))
    assert "truncated.png" in (tmp_path / "data_report.txt").read_text()
    for name in skipped:  # "stop": each bad file alone ends the load, naming itself
        alone = make_folder(tmp_path / name, n=2)
        stem = os.path.splitext(name)[0]
        for suffix in (".png", ".txt"):
            if (root / (stem + suffix)).exists():
                (alone / (stem + suffix)).write_bytes((root / (stem + suffix)).read_bytes())
        with pytest.raises(DataError, match=f"bad input .*{name}"):
            load(alone, tmp_path / "other", bad_files="stop")


def test_empty_folder_too_few_images_and_missing_folder_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load(tmp_path / "empty", tmp_path)
    with pytest.raises(DataError, match="fewer than one batch"):
        load(make_folder(tmp_path / "few", n=3), tmp_path, batch_size=4)
    with pytest.raises(DataError, match="not a folder"):
        load(tmp_path / "nope", tmp_path)


def test_range_check_runs_on_real_data(tmp_path):
    root = tmp_path / "flat"
    for i in range(4):
        save(Image.new("RGB", (4, 4), (7, 7, 7)), root / f"{i}.png")
        (root / f"{i}.txt").write_text("grey")
    with pytest.raises(DataError, match="no contrast"):
        load(root, tmp_path)


# ---- the cache ------------------------------------------------------------------------------------------
def test_cache_is_reused_then_rebuilt_when_a_file_or_a_setting_changes(tmp_path):
    root = make_folder(tmp_path / "d", n=4)
    first = load(root, tmp_path)
    second = load(root, tmp_path)
    assert (first.info["cache"], second.info["cache"]) == ("built", "reused")
    assert first.info["cache_key"] == second.info["cache_key"] and first.captions == second.captions
    assert torch.equal(first.images[torch.arange(4)], second.images[torch.arange(4)])
    (root / "sub0" / "img000.txt").write_text("a new caption, longer than before")
    third = load(root, tmp_path)
    assert third.info["cache"] == "built" and third.info["cache_key"] != first.info["cache_key"]
    assert "a new caption, longer than before" in third.captions
    assert len(os.listdir(tmp_path / "cache")) == 1  # the stale entry is gone, no temporary folder left
    assert load(root, tmp_path, image_size=16).info["cache"] == "built"


def test_cache_entries_are_memory_mapped_and_never_half_written(tmp_path):
    root = make_folder(tmp_path / "d", n=4)
    d = load(root, tmp_path)
    (entry,) = os.listdir(tmp_path / "cache")
    pixels, meta, problem = cache.read(str(tmp_path / "cache" / entry))
    assert isinstance(pixels, np.memmap) and meta["count"] == 4 and problem is None
    assert isinstance(Images(pixels).data, torch.Tensor) and len(d.images) == 4

    def explode(item):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.build(str(tmp_path / "c2" / "x-y"), [1], explode, shape=(3, 2, 2), meta={}, desc="t")
    assert os.listdir(tmp_path / "c2") == []


# ---- CIFAR-10 -------------------------------------------------------------------------------------------
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_cifar(root, per_batch=4):
    """torchvision's on-disk layout: cifar-10-batches-py/ with pickled dicts, data (N, 3072) uint8 rows R…G…B."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        labels = [(i + j) % 10 for j in range(per_batch)]
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        with open(base / f"data_batch_{i}", "wb") as f:
            pickle.dump(
                {
                    "batch_label": f"training batch {i} of 5",
                    "labels": labels,
                    "data": data,
                    "filenames": [f"{j}.png" for j in range(per_batch)],
                },
                f,
            )
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    return root


def test_cifar10_reads_torchvision_layout_with_class_captions(tmp_path):
    root = make_cifar(tmp_path / "c")
    d = load(root, tmp_path, dataset="cifar10", image_size=32)
    assert len(d.images) == 20 and d.info["dataset"] == "cifar10" and d.info["flip"] is True
    assert d.captions[:2] == ["a photo of an automobile", "a photo of a bird"]
    raw = pickle.load(open(root / "cifar-10-batches-py" / "data_batch_1", "rb"))["data"][0].reshape(3, 32, 32)
    assert torch.equal(d.images.rows(torch.tensor([0]))[0], torch.from_numpy(raw).float() / 127.5 - 1)
    same = load(root / "cifar-10-batches-py", tmp_path, dataset="cifar10", image_size=32)  # the inner folder works too
    assert same.info["cache"] == "reused"


def test_cifar10_missing_files_name_the_folder_the_files_and_the_way_out(tmp_path):
    root = make_cifar(tmp_path / "c")
    os.remove(root / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DataError) as err:
        load(root, tmp_path, dataset="cifar10")
    msg = str(err.value)
    assert "cifar-10-batches-py" in msg and "data_batch_3" in msg and "cifar-10-python.tar.gz" in msg
    assert cifar10.with_article("owl") == "an owl"


def test_flip_mirrors_about_half_of_a_batch():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    torch.manual_seed(0)
    out = Images(x.repeat(50, 1, 1, 1), flip=True)[torch.arange(100)]
    mirrored = (out == x.repeat(50, 1, 1, 1).flip(-1)).flatten(1).all(1)
    assert 20 < int(mirrored.sum()) < 80


def test_frozen_caption_embeddings_are_cached_only_within_the_budget():
    from ddpm.model.text import cache_fits

    assert cache_fits(10, 77, 512, 1024)  # CIFAR-10's ten captions: 1.5 MiB
    assert not cache_fits(50_000, 77, 512, 1024)  # one free caption per image of 50k: 7.3 GiB
    assert cache_fits(1, 4, 2**16, 1) and not cache_fits(1, 4, 2**16 + 1, 1)  # exactly 1 MiB fits


def test_metadata_lines_that_are_broken_or_empty(tmp_path):
    root = make_folder(tmp_path / "d", n=4, layout="metadata")
    lines = (root / "metadata.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"file_name": json.loads(lines[1])["file_name"], "text": "  "})
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    d = load(root, tmp_path)
    assert [r["reason"] for r in d.report] == ["empty caption in metadata.jsonl line 2"] and len(d.images) == 3
    (root / "metadata.jsonl").write_text(lines[0] + "\n{not json\n")
    with pytest.raises(DataError, match=r"metadata.jsonl:2"):
        load(root, tmp_path)
