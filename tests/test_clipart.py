"""Real pictures with free-text captions (issue 41): the Open Clip Art folder builder on a tiny source the test
draws, and the retrieval judge on a tiny folder: a sample of the very picture finds it, noise finds it at chance."""

import os

import pytest
import torch
from PIL import Image, PngImagePlugin

from ddpm.data.load import load_dataset
from ddpm.data.make_clipart_folder import main as make_clipart
from ddpm.data.make_clipart_folder import subject_from_name
from ddpm.measure import caption_probe, retrieval


def drawing(path, colour, title, author):
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", title)
    info.add_text("Author", author)
    Image.new("RGBA", (40, 20), colour).save(path, pnginfo=info)


def test_the_builder_names_each_picture_by_its_own_title_or_its_file_name(tmp_path):
    src = tmp_path / "png"
    drawing(
        src / "animals" / "armadillo_architetto_fra_01.png",
        (200, 100, 50, 255),
        "Armadillo",
        "Architetto Francesco Rollandin",
    )
    drawing(
        src / "animals" / "amphibian" / "armadillo_architetto_fra_01.png",
        (200, 100, 50, 255),
        "Armadillo",
        "Architetto Francesco Rollandin",
    )  # a copy
    for i in range(5):  # a collection's title, shared by many: the file name says what each is
        drawing(src / "computer" / f"proxy_{i}_lemon_01.png", (0, 0, 10 * i, 255), "Lemon SVG theme", "Lemon")
    drawing(
        src / "people" / "architetto_francesco_ro_01.png",
        (9, 9, 9, 255),
        "Architetto Francesco Rollandin",
        "Architetto Francesco Rollandin",
    )
    drawing(src / "shapes" / "star_85pt24step.png", (255, 255, 0, 255), "gramastar", "Someone")
    out = tmp_path / "clipart"
    assert make_clipart(["--source", str(src), "--out", str(out)]) == 0
    captions = {os.path.relpath(p, out): open(p).read().strip() for p in map(str, out.rglob("*.txt"))}
    assert captions["animals/armadillo_architetto_fra_01.txt"] == "armadillo, animals"
    assert captions["computer/proxy_0_lemon_01.txt"] == "proxy, computer"
    assert len(captions) == 6  # no copy, no author-only picture, no parametric star
    assert Image.open(out / "animals" / "armadillo_architetto_fra_01.png").mode == "RGB"
    assert subject_from_name("chemistry_flask_matthew__02", "Matthew Gates") == "chemistry flask"


def pictures(root, n=12):
    """n distinct pictures (a coloured bar at a different place each) with one caption each."""
    for i in range(n):
        img = Image.new("RGB", (16, 16), (255, 255, 255))
        img.paste((40 * (i % 6), 200 - 15 * i, 90), (i, 0, i + 4, 16))
        img.save(root / f"{i:02d}.png")
        (root / f"{i:02d}.txt").write_text(f"picture number {i}")
    return root


class Oracle:
    """A pipeline that draws the very picture each caption names (or noise)."""

    def __init__(self, data, noise=False):
        self.data, self.noise = data, noise
        self.index = {c: i for i, c in enumerate(data.captions)}

    def generate(self, prompts, *, seed, batch_size, **sampling):
        if self.noise:
            return torch.rand(len(prompts), 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        return self.data.images.rows(torch.tensor([self.index[p] for p in prompts]))


def loaded_pictures(tmp_path):
    """The drawn pictures' folder, loaded at 16×16 as training would."""
    root = tmp_path / "data"
    root.mkdir()
    return load_dataset(
        dataset="folder",
        data_dir=str(pictures(root)),
        image_size=16,
        batch_size=1,
        cache_dir=str(tmp_path / "cache"),
        log=lambda m: None,
    )


def test_retrieval_finds_the_very_picture_and_noise_is_at_chance(tmp_path):
    data = loaded_pictures(tmp_path)
    perfect = retrieval.evaluate(Oracle(data), data.images, data.captions, queries=12)
    assert perfect["top1"] == 1.0 and perfect["top5"] == 1.0 and perfect["queries"] == 12
    assert perfect["top1_chance"] == pytest.approx(1 / 12) and perfect["top5_chance"] == pytest.approx(5 / 12)
    noise = retrieval.evaluate(Oracle(data, noise=True), data.images, data.captions, queries=12)
    assert noise["top1"] <= 0.5 and noise["top1_interval"][0] <= noise["top1"] <= noise["top1_interval"][1]


def test_a_caption_carried_by_several_pictures_counts_the_nearest_of_them():
    reals = torch.tensor([[0.0], [10.0], [1.0], [11.0]])
    assert retrieval.ranks(torch.tensor([[10.2]]), reals, [[1, 3]]).tolist() == [0]
    assert retrieval.ranks(torch.tensor([[10.2]]), reals, [[0]]).tolist() == [3]  # 10, 11 and 1 are nearer


def test_the_free_text_distance_is_zero_for_the_pictures_and_readable_for_noise(tmp_path):
    """The Fréchet distance of a free-text set is in units of the real features' variance: 0 for the real
    pictures themselves, and a readable number for noise, where the raw distance in an untrained network's
    features read about 1e-5 (ADR 0065)."""
    data = loaded_pictures(tmp_path)
    real = data.images.rows(torch.arange(len(data.captions)))
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert caption_probe.random_feature_fd(real, real, image_size=16) == pytest.approx(0.0, abs=1e-6)
    far = caption_probe.random_feature_fd(real, noise, image_size=16)
    assert far > 0.1
