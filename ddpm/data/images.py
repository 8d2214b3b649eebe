"""Any image file → one (3, S, S) uint8 array, the way every real dataset here is decoded (ADR 0019).

Modes: 16-bit greyscale (``I;16*``, and ``I`` as Pillow reads 16-bit PNGs) is scaled by 255/65535, so that a
full-range 16-bit image does not clip to white; anything with transparency (RGBA, LA, PA, P or L/RGB with a
``transparency`` entry) is alpha-composited on ``background``; CMYK, L, P, YCbCr... go through Pillow's
``convert("RGB")``. EXIF orientation is applied first (``ImageOps.exif_transpose``).

Resize (``resize``): "crop" scales the shorter side to S and cuts the centre square; "pad" scales the longer
side to S and fills the rest with ``background``. Bicubic, which Pillow antialiases when shrinking.

Every decoding problem (unreadable, truncated, not an image, a decompression-bomb header: more pixels than
``Image.MAX_IMAGE_PIXELS``) raises ``BadFile`` with the path and the reason.
"""

import warnings

import numpy as np
import torch
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
RESIZE_POLICIES = ("crop", "pad")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class BadFile(Exception):
    """One input file that cannot be used; ``path`` and ``reason`` go into the skip report."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def to_rgb(img: Image.Image, background: tuple) -> Image.Image:
    """Any Pillow mode → RGB, transparency composited on ``background`` (r, g, b)."""
    if img.mode in _SIXTEEN_BIT:
        grey = np.asarray(img, dtype=np.float64)  # 16-bit values in an int array
        grey = np.clip(grey * (255.0 / 65535.0), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if img.mode == "F":
        return Image.fromarray(np.clip(np.asarray(img), 0, 255).round().astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return img.convert("RGB")


def fit(img: Image.Image, size: int, resize: str, background: tuple) -> Image.Image:
    """RGB image → size×size by the resize policy ("crop" or "pad"), bicubic."""
    w, h = img.size
    if resize == "crop":
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        return img.crop((left, top, left + size, top + size))
    if resize == "pad":
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = Image.new("RGB", (size, size), tuple(background))
        canvas.paste(img.resize((nw, nh), Image.BICUBIC), ((size - nw) // 2, (size - nh) // 2))
        return canvas
    raise ValueError(f"resize policy {resize!r}: allowed {', '.join(RESIZE_POLICIES)}")


def from_pil(img: Image.Image, *, size: int, resize: str, background: tuple) -> np.ndarray:
    """A loaded Pillow image → (3, size, size) uint8."""
    img = fit(to_rgb(ImageOps.exif_transpose(img), background), size, resize, background)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def decode(path: str, *, size: int, resize: str, background: tuple) -> np.ndarray:
    """Image file → (3, size, size) uint8; raises BadFile naming the path for anything unusable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # past MAX_IMAGE_PIXELS: refuse
            with Image.open(path) as img:
                img.load()  # truncated data fails here, not later
                return from_pil(img, size=size, resize=resize, background=background)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadFile(path, f"decompression-bomb guard: {err}") from None
    except Image.UnidentifiedImageError:
        raise BadFile(path, "not an image Pillow can read (wrong extension, or not an image at all)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:  # truncated, corrupt, unreadable
        raise BadFile(path, f"cannot decode: {err}") from None


def to_model_range(pixels) -> torch.Tensor:
    """uint8 (…, 3, H, W) array or tensor → float32 in [-1, 1]."""
    return torch.as_tensor(np.asarray(pixels)).float() / 127.5 - 1
