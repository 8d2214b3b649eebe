"""Write scikit-learn's handwritten digits as a captioned image folder: ``python -m ddpm.data.make_digits_folder``.

``make digits`` installs ``requirements-data.txt`` and runs this. The 1,797 images of
``sklearn.datasets.load_digits`` (real scans of handwriting, UCI "Optical Recognition of Handwritten Digits",
8×8 pixels, 17 grey levels 0–16) become ``<out>/<digit>/<index>.png`` (greyscale, 0–16 scaled to 0–255,
white strokes on black as shipped) each with a sidecar ``<index>.txt``: "a handwritten digit 3". Train on it with
``make train ARGS="--set DATASET=folder --set DATA_DIR=<out>"``.
"""

import argparse
import os

import numpy as np
from PIL import Image

from ddpm.cli import command_line
from ddpm.files import atomic_write, write_text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", default=os.path.join("runs", "data", "digits"), help="folder to write (default: %(default)s)"
    )
    args = p.parse_args(command_line(argv))
    try:
        from sklearn.datasets import load_digits  # requirements-data.txt, not a training dependency
    except ImportError:
        raise SystemExit("make_digits_folder needs scikit-learn: pip install -r requirements-data.txt (or make digits)")
    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8), 0–16 → 0–255
    for i, (image, label) in enumerate(zip(pixels, digits.target)):
        stem = os.path.join(args.out, str(label), f"{i:04d}")
        os.makedirs(os.path.dirname(stem), exist_ok=True)
        atomic_write(stem + ".png", lambda tmp: Image.fromarray(image, "L").save(tmp, format="PNG"))
        write_text(f"a handwritten digit {label}\n", stem + ".txt")
    print(f"wrote {len(pixels)} images with captions to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
