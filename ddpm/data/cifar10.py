"""CIFAR-10 from a local folder in torchvision's on-disk layout, never downloaded (ADR 0019).

``DATA_DIR`` is the folder that holds ``cifar-10-batches-py/`` (torchvision's ``root``), or that folder itself.
The five training batches and ``batches.meta`` are Python pickles. A pickle can name any function to call while
it loads, so they are read here with a restricted unpickler (``safe_loads``) that admits only what the format
holds: dicts, lists, strings, bytes, numbers and numpy arrays of plain dtypes. A file that asks for anything
else (``os.system``, a class) is refused with its path and what it asked for, before anything is called.

Official files are checked against torchvision's MD5 sums: a batch of 10,000 images (the official count) whose
sum differs is damaged and refused. Smaller files in the same format (the tests build them) are read unchecked,
which ``info`` records. Captions come from the class names in ``batches.meta`` through a template: "a photo of
{}" → "a photo of an airplane".
"""

import hashlib
import io
import os
import pickle

import numpy as np
from torchvision.datasets import CIFAR10

BASE = CIFAR10.base_folder  # "cifar-10-batches-py"
MD5 = {name: md5 for name, md5 in CIFAR10.train_list} | {CIFAR10.meta["filename"]: CIFAR10.meta["md5"]}
FILES = tuple(MD5)
OFFICIAL_BATCH = 10_000  # images in each official training batch
HOW_TO_GET = (
    "get cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html on a machine with "
    "network access and unpack it there (tar xzf), or run torchvision.datasets.CIFAR10(root, download=True) there"
)

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1
    from numpy.core.multiarray import _reconstruct


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """Python 3's protocol-2 pickles spell a bytes object as ``_codecs.encode(text, "latin1")``: that, and no codec."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"it asks for _codecs.encode with the codec {encoding!r}")
    return text.encode("latin1")


# (module, name) → what the unpickler may build: numpy's array reconstruction (numpy 1 and 2 spell its module
# apart), the classes it is handed, and bytes as protocol 2 writes them. Python 2's pickles (the official files)
# read the same with encoding="latin1".
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class CifarMissing(Exception):
    """The folder lacks CIFAR-10's files, or holds files that are not; the message names the file and the way out."""


class _FormatOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR-10 batch never holds")


def safe_loads(blob: bytes):
    """Unpickle ``blob`` admitting only containers, strings, numbers and numpy arrays of non-object dtypes."""
    obj = _FormatOnly(io.BytesIO(blob), encoding="latin1").load()
    _check_plain(obj)
    return obj


def _check_plain(obj) -> None:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:  # an object array's items would have been built by the rules above, but say so
            raise pickle.UnpicklingError("it holds a numpy array of Python objects (builtins.object)")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _check_plain(key)
            _check_plain(value)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _check_plain(item)
    elif obj is not None and not isinstance(obj, (str, bytes, int, float, bool)):
        raise pickle.UnpicklingError(f"it holds a {type(obj).__module__}.{type(obj).__name__}")


def _read(path: str) -> tuple:
    """(the pickled dict with str keys, the file's MD5) of one CIFAR file; CifarMissing naming it otherwise."""
    with open(path, "rb") as f:
        blob = f.read()
    try:
        obj = safe_loads(blob)
    except pickle.UnpicklingError as err:
        raise CifarMissing(f"{path}: refused, not read: {err}. Use the official CIFAR-10 files: {HOW_TO_GET}") from None
    except Exception as err:  # noqa: BLE001 - truncated, or not a pickle at all
        raise CifarMissing(f"{path}: not a CIFAR-10 pickle ({type(err).__name__}: {err}); {HOW_TO_GET}") from None
    if not isinstance(obj, dict):
        raise CifarMissing(f"{path}: not a CIFAR-10 batch (a {type(obj).__name__}, not a dict); {HOW_TO_GET}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}, hashlib.md5(blob).hexdigest()


def root_of(data_dir: str) -> str:
    """torchvision's ``root``: DATA_DIR itself, or its parent when DATA_DIR is ``cifar-10-batches-py``."""
    data_dir = os.path.abspath(data_dir)
    return os.path.dirname(data_dir) if os.path.basename(data_dir) == BASE else data_dir


def source_files(data_dir: str) -> list:
    """The files the training set is read from; CifarMissing when any is absent."""
    folder = os.path.join(root_of(data_dir), BASE)
    paths = [os.path.join(folder, name) for name in FILES]
    missing = [os.path.basename(p) for p in paths if not os.path.isfile(p)]
    if missing:
        raise CifarMissing(
            f"CIFAR-10 not found in {folder}: missing {', '.join(missing)} (expected "
            f"{', '.join(FILES)} there). This machine cannot download: {HOW_TO_GET}, then pass "
            f"--set DATA_DIR=<the folder holding {BASE}>"
        )
    return paths


def with_article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _text(value) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def load(data_dir: str, template: str) -> tuple:
    """(pixels (N, 32, 32, 3) uint8, captions: N strings, MD5 note) of the training batches."""
    paths = source_files(data_dir)
    read = {os.path.basename(p): _read(p) for p in paths}
    data, labels = [], []
    for name in FILES[:-1]:
        batch, _ = read[name]
        rows, targets = batch.get("data"), batch.get("labels")
        if not (
            isinstance(rows, np.ndarray)
            and rows.dtype == np.uint8
            and rows.ndim == 2
            and rows.shape[1] == 3072
            and isinstance(targets, list)
            and len(targets) == len(rows)
            and all(type(t) is int and 0 <= t < 10 for t in targets)
        ):
            raise CifarMissing(
                f"{os.path.join(root_of(data_dir), BASE, name)}: not a CIFAR-10 batch (expected 'data' "
                f"uint8 rows of 3,072 and one label in 0-9 for each); {HOW_TO_GET}"
            )
        data.append(rows)
        labels += targets
    sizes = {len(rows) for rows in data}
    official = sizes == {OFFICIAL_BATCH}
    damaged = [name for name, (_, md5) in read.items() if md5 != MD5[name]]
    if official and damaged:
        raise CifarMissing(
            f"{os.path.join(root_of(data_dir), BASE)}: the MD5 of {', '.join(damaged)} differs from "
            f"torchvision's for the official files: damaged in transfer? {HOW_TO_GET}"
        )
    note = (
        "verified against torchvision's MD5s"
        if official
        else f"not the official files ({', '.join(map(str, sorted(sizes)))} images a batch): not checked"
    )
    classes = [_text(c) for c in read[FILES[-1]][0].get("label_names", [])]
    if len(classes) != 10:
        raise CifarMissing(f"{os.path.join(root_of(data_dir), BASE, FILES[-1])}: expected 10 label_names; {HOW_TO_GET}")
    pixels = np.concatenate(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # rows R…G…B → HWC
    return np.ascontiguousarray(pixels), [template.format(with_article(classes[t])) for t in labels], note
