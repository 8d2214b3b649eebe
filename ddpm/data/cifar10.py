"""CIFAR-10 from a local folder in torchvision's on-disk layout, never downloaded (ADR 0019).

``DATA_DIR`` is the folder that holds ``cifar-10-batches-py/`` (torchvision's ``root``), or that folder itself.
The five training batches are read with ``torchvision.datasets.CIFAR10(download=False)``; the files are checked
for presence, not for torchvision's MD5 sums, so that a small file in the same format works too (the tests
build one); a file that is not a CIFAR pickle fails to load with its path in the message. Captions come from
the class names in ``batches.meta`` through a template: "a photo of {}" → "a photo of an airplane".
"""

import os

import numpy as np
from torchvision.datasets import CIFAR10

BASE = CIFAR10.base_folder  # "cifar-10-batches-py"
FILES = tuple(name for name, _ in CIFAR10.train_list) + (CIFAR10.meta["filename"],)
HOW_TO_GET = ("get cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html on a machine with "
              "network access and unpack it there (tar xzf), or run torchvision.datasets.CIFAR10(root, download=True) there")


class CifarMissing(Exception):
    """The folder lacks CIFAR-10's files; the message names the folder, the files and how to get them."""


class _LocalCIFAR10(CIFAR10):
    """torchvision's reader with the MD5 checks off (md5 None = the file must exist), training batches only."""

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = []  # only the training batches are read (and required)
    meta = {**CIFAR10.meta, "md5": None}


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
        raise CifarMissing(f"CIFAR-10 not found in {folder}: missing {', '.join(missing)} (expected "
                           f"{', '.join(FILES)} there). This machine cannot download: {HOW_TO_GET}, then pass "
                           f"--set DATA_DIR=<the folder holding {BASE}>")
    return paths


def with_article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def load(data_dir: str, template: str) -> tuple:
    """(pixels (N, 32, 32, 3) uint8, captions: N strings) of the training batches."""
    source_files(data_dir)
    try:
        ds = _LocalCIFAR10(root_of(data_dir), train=True, download=False)
    except Exception as err:  # a pickle that is not CIFAR's: name the folder, not a traceback
        raise CifarMissing(f"cannot read CIFAR-10 from {os.path.join(root_of(data_dir), BASE)}: {err}. {HOW_TO_GET}") from None
    captions = [template.format(with_article(ds.classes[t])) for t in ds.targets]
    return np.asarray(ds.data, dtype=np.uint8), captions
