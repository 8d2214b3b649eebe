"""Decode once: a dataset's images as one uint8 (N, 3, S, S) ``.npy``, memory-mapped by every later run (ADR 0019).

An entry lives in ``<cache_dir>/<source>-<key>/``: ``images.npy`` (rows past ``meta["count"]`` are unused:
skipped files leave them empty), ``meta.json`` (captions, the skip report, the key's inputs). ``key`` hashes
the source files' paths, sizes and modification times and the decode settings, so that editing, adding or
removing a file, or changing IMAGE_SIZE, the resize policy or the background, builds a new entry; the
source's older entries are then deleted. An entry is built in a temporary folder beside it and renamed into
place, so that an interrupted build leaves no entry at all. Reading maps the file copy-on-write: pages come
from disk as batches touch them, so a dataset larger than memory trains.
"""

import hashlib
import json
import os
import shutil
import tempfile
from typing import Callable, Iterable

import numpy as np
from tqdm import tqdm

VERSION = 1  # bump when decoding changes what the same file and settings give


def file_stamps(paths: Iterable[str]) -> list:
    """[[path, size, mtime_ns], ...] of existing files: the part of the key that notices edits."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
    return out


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def entry_dir(cache_dir: str, source: dict, stamps: list, settings: dict) -> tuple:
    """(folder of the entry, key): ``source`` names the dataset (kind and folder), the rest versions it."""
    key = digest({"version": VERSION, "source": source, "files": stamps, "settings": settings})
    return os.path.join(cache_dir, f"{digest(source)}-{key}"), key


def read(folder: str) -> tuple:
    """(images (N, 3, S, S) uint8 memory map, meta dict) of a built entry, or (None, None) when absent/unreadable."""
    try:
        with open(os.path.join(folder, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
        images = np.load(os.path.join(folder, "images.npy"), mmap_mode="c")
        return images[: meta["count"]], meta
    except (OSError, ValueError, KeyError):
        return None, None


def build(folder: str, items: list, decode: Callable, *, shape: tuple, meta: dict, desc: str) -> tuple:
    """Decode ``items`` into a new entry at ``folder``; returns ``read(folder)``.

    ``decode(item)`` returns (pixels (3, S, S) uint8, caption) or None for an item to leave out (it has already
    been reported). Older entries of the same source (same name prefix) are removed once this one is in place.
    """
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".building-", dir=parent)
    try:
        out = np.lib.format.open_memmap(os.path.join(tmp, "images.npy"), mode="w+", dtype=np.uint8,
                                        shape=(max(1, len(items)),) + tuple(shape))
        captions = []
        for item in tqdm(items, desc=desc, unit="img", dynamic_ncols=True, disable=None):
            got = decode(item)
            if got is not None:
                out[len(captions)] = got[0]
                captions.append(got[1])
        out.flush()
        del out
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump({**meta, "count": len(captions), "captions": captions}, f)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process built the same entry meanwhile: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prefix = os.path.basename(folder).split("-")[0] + "-"
    for name in os.listdir(parent):
        if name.startswith(prefix) and name != os.path.basename(folder):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    return read(folder)
