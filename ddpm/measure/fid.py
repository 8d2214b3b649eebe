"""Inception FID between two image folders, for real datasets, with torch-fidelity (an optional dependency) and its
Inception weights, which this machine cannot download: each missing piece is one error saying what to install or
where to put the file.
"""

import os

import torch

FID_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


class FidUnavailableError(RuntimeError):
    """torch-fidelity or its Inception weights are missing; the message says what to install or download."""


def fid_weights_path() -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints", FID_WEIGHTS_FILE)


def fid_for_folder(real_dir: str, fake_dir: str) -> float:
    """Inception FID between two image folders with torch-fidelity, offline: needs the package and its weights."""
    try:
        import torch_fidelity  # noqa: F401  (optional dependency)
    except ImportError as err:
        raise FidUnavailableError(
            "fid_for_folder needs torch-fidelity: `pip install torch-fidelity`, and its Inception weights file "
            f"{FID_WEIGHTS_FILE} in the torch hub cache ({fid_weights_path()}), as this machine cannot download it"
        ) from err
    weights = fid_weights_path()
    if not os.path.isfile(weights):
        raise FidUnavailableError(
            f"torch-fidelity is installed but its Inception weights are not: put {FID_WEIGHTS_FILE} at {weights} "
            "(the torch hub cache, `torch.hub.get_dir()`/checkpoints) before computing FID"
        )
    for d in (real_dir, fake_dir):
        if not os.path.isdir(d):
            raise FileNotFoundError(f"{d}: no such image folder")
    metrics = torch_fidelity.calculate_metrics(
        input1=fake_dir, input2=real_dir, fid=True, cuda=torch.cuda.is_available(), verbose=False
    )
    return float(metrics["frechet_inception_distance"])
