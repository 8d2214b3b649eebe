"""``load_dataset``: the one call train.py and the evaluation make for any DATASET (ADR 0019).

Returns a ``Loaded``: ``images`` (indexable by a (B,) index tensor → (B, 3, S, S) float in [-1, 1]), one
caption per image, ``info`` (dataset, folder, size, skipped, cache key, decode seconds: run.json's provenance)
and the skip ``report``. ``shapes`` is drawn in memory as before; ``cifar10`` and ``folder`` go through the
decode cache (``ddpm.data.cache``) and train from its memory map. Bad files are skipped into the report
(``bad_files="skip"``) or stop the load naming the path (``"stop"``). The start-up range check
(``shapes.check_images``) runs on every dataset.
"""

import collections
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ddpm.data import cache, cifar10, folder
from ddpm.data.images import BadFile, decode, from_pil, to_model_range
from ddpm.data.shapes import check_images, make_shapes_dataset
from ddpm.files import write_text

DATASETS = ("shapes", "cifar10", "folder")
BAD_FILE_POLICIES = ("skip", "stop")
FLIP_POLICIES = ("auto", "on", "off")
FLIP_BY_DATASET = {"shapes": False, "cifar10": True, "folder": False}  # "auto": captions may say left/right
CHECK_ROWS = 4096  # images the start-up range check reads (evenly spaced); all of them for smaller sets


class DataError(Exception):
    """Bad input that stops the run; the message names the path and the way out."""


class Images:
    """Training images behind one interface: a float tensor (shapes) or a uint8 memory map (cached sets).

    ``images[idx]`` → (B, 3, S, S) float32 in [-1, 1] on ``device``, randomly flipped left-right (torch's
    global generator, saved in checkpoints) when ``flip``; ``rows(idx)`` is the same without the flip.
    """

    def __init__(self, data, *, flip: bool = False, device="cpu"):
        self.data = torch.from_numpy(data) if isinstance(data, np.ndarray) else data  # memmap: no copy
        self.flip, self.device = flip, torch.device(device)

    def __len__(self) -> int:
        return len(self.data)

    def to(self, device):
        on_device = self.data.to(device) if self.data.is_floating_point() else self.data  # uint8 stays mapped
        return Images(on_device, flip=self.flip, device=device)

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.data[idx.to(self.data.device)]
        x = x if x.is_floating_point() else to_model_range(x)
        return x.to(self.device)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.rows(idx)
        if self.flip:
            mirror = (torch.rand(len(x)) < 0.5).to(x.device)
            x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
        return x


def printable(text: str) -> str:
    """``text`` with each unprintable character (a newline or a tab in a file name) as its escape, \\n, so that a
    report keeps one line per file."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


@dataclass
class Loaded:
    images: Images
    captions: list
    info: dict
    report: list = field(default_factory=list)  # [{"path", "reason", "skipped"}]

    def write_report(self, run_dir: str) -> None:
        """``<run_dir>/data_report.txt``: one line per skipped or noted file (nothing when there are none)."""
        if self.report:
            write_text(
                "".join(
                    f"{'skipped' if r['skipped'] else 'note'}\t{printable(r['path'])}\t{printable(r['reason'])}\n"
                    for r in self.report
                ),
                os.path.join(run_dir, "data_report.txt"),
            )

    def grid_captions(self, n: int) -> list:
        """n prompts for sample grids: the dataset's distinct captions, most frequent first, cycled."""
        ranked = [c for c, _ in sorted(collections.Counter(self.captions).items(), key=lambda kv: (-kv[1], kv[0]))]
        return [ranked[i % len(ranked)] for i in range(n)]


def load_dataset(
    *,
    dataset: str,
    data_dir: str,
    image_size: int,
    batch_size: int,
    cache_dir: str,
    dataset_size: int = 10000,
    dataset_seed: int = 0,
    split: str = "train",
    flip: str = "auto",
    bad_files: str = "skip",
    background: tuple = (255, 255, 255),
    resize: str = "crop",
    cifar10_caption: str = "a photo of {}",
    caption_column: str = "text",
    log=print,
) -> Loaded:
    """The training set of ``dataset``; raises DataError for a missing folder, a stopping bad file, too few images."""
    if dataset not in DATASETS:
        raise DataError(f"DATASET = {dataset!r}: allowed {', '.join(DATASETS)}")
    flipped = FLIP_BY_DATASET[dataset] if flip == "auto" else flip == "on"
    start = time.perf_counter()
    if dataset == "shapes":
        d = make_shapes_dataset(size=dataset_size, seed=dataset_seed, image_size=image_size, split=split)
        loaded = Loaded(
            Images(d.images, flip=flipped), d.captions, {"dataset": "shapes", "split": split, "size": len(d.captions)}
        )
    else:
        loaded = _load_cached(
            dataset,
            data_dir,
            image_size=image_size,
            cache_dir=cache_dir,
            bad_files=bad_files,
            background=tuple(background),
            resize=resize,
            template=cifar10_caption,
            flip=flipped,
            log=log,
            split=split,
            caption_column=caption_column,
        )
    n = len(loaded.images)
    if n < batch_size:
        raise DataError(
            f"{data_dir or dataset}: {n} usable images, fewer than one batch (BATCH_SIZE = {batch_size}); "
            "add images or lower BATCH_SIZE"
        )
    check = torch.linspace(0, n - 1, min(n, CHECK_ROWS)).round().long().unique()
    try:
        check_images(loaded.images.rows(check), image_size=image_size)
    except ValueError as err:
        raise DataError(f"{data_dir or dataset}: {err}") from None
    loaded.info.update(flip=flipped, load_seconds=round(time.perf_counter() - start, 2))
    return loaded


def _load_cached(
    dataset,
    data_dir,
    *,
    image_size,
    cache_dir,
    bad_files,
    background,
    resize,
    template,
    flip,
    log,
    split="train",
    caption_column="text",
):
    if not data_dir or not os.path.isdir(data_dir):
        raise DataError(
            f"DATA_DIR = {data_dir!r}: not a folder; DATASET = {dataset!r} needs --set DATA_DIR=/path/to/the/images"
        )
    root = os.path.abspath(data_dir)
    settings = {"image_size": image_size, "resize": resize, "background": list(background)}
    report, listed = [], []  # what decoding skipped (kept in the cache); names found unusable at every start

    def bad(err: BadFile, into=report):
        if bad_files == "stop":
            raise DataError(f"bad input {err.path}: {err.reason} (BAD_FILES = 'stop'; 'skip' leaves it out)")
        into.append({"path": err.path, "reason": err.reason, "skipped": True})

    try:
        if dataset == "cifar10":
            root = cifar10.root_of(root)  # the folder holding cifar-10-batches-py, however DATA_DIR named it
            sources = cifar10.source_files(root)
            settings["caption"] = template
            items = None  # read below, only when the cache must be built
        else:
            root = folder.split_root(root, split)
            metadata = folder.read_metadata(root, caption_column)
            items, unusable = folder.list_images(root)
            for err in unusable:
                bad(err, listed)
            if not items:
                raise DataError(
                    f"DATA_DIR = {root}: no images found (looked for {', '.join(folder.IMAGE_SUFFIXES)}, "
                    "hidden files ignored)"
                )
            sources = items + [c for p in items for c in folder.caption_files(p, root)] + folder.metadata_files(root)
            settings["caption_column"] = caption_column
        where, key = cache.entry_dir(
            cache_dir, {"dataset": dataset, "root": root}, cache.file_stamps(sources), settings
        )
    except BadFile as err:
        raise DataError(f"bad input {err.path}: {err.reason}") from None
    except cifar10.CifarMissing as err:
        raise DataError(str(err)) from None
    except OSError as err:  # a source removed or made unreadable while listed
        raise DataError(
            f"cannot read {err.filename or root}: {(err.strerror or str(err)).lower()}; fix the file "
            "or move it out of DATA_DIR"
        ) from None
    t0 = time.perf_counter()
    pixels, meta, problem = cache.read(where)
    if pixels is None:
        if problem != "absent":
            log(f"the decode cache {where} is damaged ({problem}); decoding again")
        log(f"decoding {dataset} from {root} into the cache {where} (once; later runs map it)")
        extra = {}
        if dataset == "cifar10":
            try:
                raw, captions, md5 = cifar10.load(root, template)
            except cifar10.CifarMissing as err:
                raise DataError(str(err)) from None
            items, extra = list(zip(raw, captions)), {"md5": md5}

            def one(item):
                return from_pil(Image.fromarray(item[0]), size=image_size, resize=resize, background=background), item[
                    1
                ]
        else:

            def one(path):
                try:
                    text, note = folder.caption_for(path, root, metadata)
                    pixels = decode(path, size=image_size, resize=resize, background=background)
                except BadFile as err:
                    return bad(err)
                if note:
                    report.append({"path": note[0], "reason": note[1], "skipped": False})
                return pixels, text

        try:
            pixels, meta = cache.build(
                where,
                items,
                one,
                shape=(3, image_size, image_size),
                desc=f"decoding {dataset}",
                meta={"key": key, "dataset": dataset, "root": root, "settings": settings, "report": report, **extra},
            )
        except cache.CacheError as err:
            raise DataError(str(err)) from None
        status = "built"
    else:
        status = "reused"
    seconds = round(time.perf_counter() - t0, 2)
    report = listed + meta["report"]
    skipped = sum(r["skipped"] for r in report)
    log(
        f"data: {dataset} {root}: {len(pixels)} images, {skipped} skipped, cache {status} in {seconds} s ({where})"
        + "".join(
            f"\n  {'skipped' if r['skipped'] else 'note'}: {printable(r['path'])}: {printable(r['reason'])}"
            for r in report[:10]
        )
        + (f"\n  ... {len(report) - 10} more in the run's data_report.txt" if len(report) > 10 else "")
    )
    info = {
        "dataset": dataset,
        "data_dir": root,
        "size": len(pixels),
        "skipped": skipped,
        "cache_key": key,
        "cache": status,
        "cache_seconds": seconds,
        **({"md5": meta["md5"]} if "md5" in meta else {}),
    }
    return Loaded(Images(pixels, flip=flip), list(meta["captions"]), info, report)
