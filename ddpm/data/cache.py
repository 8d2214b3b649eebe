"""Decode once: a dataset's images as one uint8 (N, 3, S, S) ``.npy``, memory-mapped by every later run (ADR 0019).

An entry lives in ``<cache_dir>/<source>-<key>/``: ``images.npy`` (rows past ``meta["count"]`` are unused:
skipped files leave them empty) and ``meta.json`` (captions, the skip report, the key's inputs, and the SHA-256
of ``images.npy``). ``key`` hashes the source files' paths, sizes and contents and the decode settings, so that
editing, adding or removing a file (even an edit of the same size with its modification time put back), or
changing IMAGE_SIZE, the resize policy or the background, builds a new entry; the source's older entries are
then deleted. Reading checks ``images.npy`` against its recorded SHA-256, so a cache whose pixels were changed or
cut short after it was built is rebuilt, not trained on. Both hashes read every byte once per start (SHA-256 ran
at 1.7 GB/s here; the closing note of issue 38 gives the cost on the digits folder and on CIFAR-10's size).

An entry is built in a temporary folder beside it and renamed into place, so that an interrupted build leaves
no entry at all. Its file is allocated in full before any pixel is written, so a disk that fills is an OSError
at the start (``CacheError``, one line), not a SIGBUS from a page of the memory map. Reading maps the file
copy-on-write: pages come from disk as batches touch them, so a dataset larger than memory trains.
"""

import hashlib
import json
import os
import shutil
import tempfile
from typing import Callable, Iterable

import numpy as np

from ddpm.progress import progress

VERSION = 2  # bump when decoding changes what the same file and settings give (2: the key hashes contents)
CHUNK = 1 << 20


class CacheError(OSError):
    """The cache cannot be written (a full disk, a read-only folder); the message names the folder and the way out."""


def file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_stamps(paths: Iterable[str]) -> list:
    """[[path, size, SHA-256 of the contents], ...]: the part of the key that notices edits."""
    return [[os.path.abspath(p), os.path.getsize(p), file_digest(p)] for p in paths]


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def entry_dir(cache_dir: str, source: dict, stamps: list, settings: dict) -> tuple:
    """(folder of the entry, key): ``source`` names the dataset (kind and folder), the rest versions it."""
    key = digest({"version": VERSION, "source": source, "files": stamps, "settings": settings})
    return os.path.join(cache_dir, f"{digest(source)}-{key}"), key


def read(folder: str) -> tuple:
    """(images (N, 3, S, S) uint8 memory map, meta dict, problem): a built entry whose ``images.npy`` matches its
    recorded SHA-256; else (None, None, why): "absent", or what is wrong with it."""
    meta_path, images_path = os.path.join(folder, "meta.json"), os.path.join(folder, "images.npy")
    if not os.path.isdir(folder):
        return None, None, "absent"
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        if file_digest(images_path) != meta["sha256"]:
            return None, None, "its images.npy differs from the SHA-256 recorded when it was built"
        images = np.load(images_path, mmap_mode="c")
        if images.ndim != 4 or images.dtype != np.uint8 or len(images) < meta["count"]:
            return None, None, f"its images.npy holds {images.shape} {images.dtype}, not {meta['count']} uint8 images"
        return images[: meta["count"]], meta, None
    except (OSError, ValueError, KeyError, TypeError) as err:
        return None, None, f"unreadable ({type(err).__name__}: {err})"


def _no_space(folder: str, err: OSError, need: int) -> CacheError:
    reason = (err.strerror or str(err)).lower()
    return CacheError(
        err.errno,
        f"cannot write the decode cache in {folder} ({reason}; it needs {need / 2**20:,.1f} "
        "MB): free space or fix the folder's permissions, or pass another --runs-dir (the cache "
        "lives in <runs-dir>/.data-cache)",
    )


def build(folder: str, items: list, decode: Callable, *, shape: tuple, meta: dict, desc: str) -> tuple:
    """Decode ``items`` into a new entry at ``folder``; returns ``read(folder)`` (its first two values).

    ``decode(item)`` returns (pixels (3, S, S) uint8, caption) or None for an item to leave out (it has already
    been reported). A damaged entry at ``folder`` is replaced; older entries of the same source (same name
    prefix) are removed once this one is in place. Raises ``CacheError`` when the folder cannot be written.
    """
    parent = os.path.dirname(folder)
    rows = max(1, len(items))
    need = rows * int(np.prod(shape)) + CHUNK
    tmp = None
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".building-", dir=parent)
        path = os.path.join(tmp, "images.npy")
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
            "fortran_order": False,
            "shape": (rows, *shape),
        }
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            offset = f.tell()
            os.posix_fallocate(f.fileno(), 0, offset + rows * int(np.prod(shape)))  # ENOSPC here, not SIGBUS later
        out = np.lib.format.open_memmap(path, mode="r+")
        captions = []
        for item in progress(items, desc=desc, unit="img"):
            got = decode(item)
            if got is not None:
                out[len(captions)] = got[0]
                captions.append(got[1])
        out.flush()
        del out
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
            json.dump({**meta, "count": len(captions), "captions": captions, "sha256": file_digest(path)}, f)
        _put_in_place(tmp, folder)
    except OSError as err:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise _no_space(parent, err, need) from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    prefix = os.path.basename(folder).split("-")[0] + "-"
    for name in os.listdir(parent):
        if name.startswith(prefix) and name != os.path.basename(folder):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    return read(folder)[:2]


def _put_in_place(tmp: str, folder: str) -> None:
    """Rename the built ``tmp`` to ``folder``. Where another process built a good entry there meanwhile, keep
    theirs; a damaged one is moved aside and deleted (a rename onto a folder that holds files fails)."""
    try:
        os.replace(tmp, folder)
        return
    except OSError:
        if read(folder)[0] is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            return
    stale = tempfile.mkdtemp(prefix=".stale-", dir=os.path.dirname(folder))
    os.replace(folder, os.path.join(stale, "entry"))
    os.replace(tmp, folder)
    shutil.rmtree(stale, ignore_errors=True)
