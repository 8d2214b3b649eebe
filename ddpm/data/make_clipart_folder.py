"""Write Open Clip Art's pictures as a captioned image folder: ``python -m ddpm.data.make_clipart_folder``.

``make clipart`` fetches Debian's ``openclipart-png`` package (8,121 PNG drawings, public domain; no root: ``apt-get
download`` and ``dpkg -x`` into ``runs/data/.openclipart/``) and runs this on its ``usr/share/openclipart/png``.
Each distinct drawing (byte-identical copies in two folders are kept once; drawings over Pillow's pixel limit are
left out) becomes ``<out>/<category>/<stem>.png``, composited on white, with a free-text caption beside it that
says what it shows, ``x.txt``: "armadillo, animals". The subject comes from the drawing's PNG title where the
title is its own (it appears on at most ``MAX_TITLE_REPEATS`` drawings: "armadillo"), else from its file name
(the collection titles "gramastar" or "Lemon SVG theme" say nothing of the picture), with the author's name and
the numbering taken out; the category is the package's folder ("animals", "signs and symbols"). Drawings whose
subject is the author's name alone, and the 1,375 parametric stars of the "gramastar" collection, are left out. Train on it with ``make train ARGS="--set DATASET=folder --set
DATA_DIR=runs/data/clipart --set RESIZE=pad"``; judge it with ``make eval`` (retrieval: ddpm/measure/retrieval.py).
"""

import argparse
import collections
import hashlib
import os
import re
import warnings

from PIL import Image

from ddpm.cli import command_line, fail
from ddpm.files import atomic_write, write_text

SOURCE = "/usr/share/openclipart/png"
MAX_TITLE_REPEATS = 3
MIN_LETTERS = 3
GENERATED = ("gramastar",)  # collections of parametric geometry ("star 85pt24step"): not pictures with names


def subject_from_name(stem: str, author: str) -> str:
    """``"armadillo_architetto_fra_01"`` by Architetto Francesco Rollandin → ``"armadillo"``: the words of the file
    name without the numbering and without the author's words, which the package abbreviates at 25 characters."""
    author_words = [w for w in re.split(r"[^a-z]+", author.lower()) if len(w) >= 2]
    words = []
    for token in re.split(r"[_\-\s]+", stem.lower()):
        if not token or token.isdigit():
            continue
        if len(token) >= 2 and any(w.startswith(token) or token.startswith(w) for w in author_words):
            continue
        words.append(token)
    return " ".join(words)


def caption_of(path: str, source: str, title: str, author: str, title_counts: collections.Counter) -> str:
    """The free-text caption of one drawing, or "" when nothing but its author would name it."""
    stem = os.path.splitext(os.path.basename(path))[0]
    if title.lower() in GENERATED:
        return ""
    own_title = title and title_counts[title.lower()] <= MAX_TITLE_REPEATS and title.lower() != author.lower()
    subject = " ".join(title.lower().split()) if own_title else subject_from_name(stem, author)
    if sum(c.isalpha() for c in subject) < MIN_LETTERS:
        return ""
    category = os.path.relpath(os.path.dirname(path), source).split(os.sep)[0].replace("_", " ")
    return f"{subject}, {category}"


def read_drawings(source: str) -> list:
    """[(path, title, author)] of each distinct PNG under ``source`` that Pillow opens within its pixel limit."""
    seen, out = set(), []
    for folder, _, files in sorted(os.walk(source)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            if not name.endswith(".png"):
                continue
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    with Image.open(path) as img:
                        info = img.info
            except (OSError, Image.DecompressionBombError, Image.DecompressionBombWarning):
                continue
            out.append((path, str(info.get("Title") or "").strip(), str(info.get("Author") or "").strip()))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=SOURCE, help="openclipart-png's png folder (default: %(default)s)")
    p.add_argument(
        "--out", default=os.path.join("runs", "data", "clipart"), help="folder to write (default: %(default)s)"
    )
    p.add_argument("--size", type=int, default=64, help="longer side of the written PNGs (default: %(default)s)")
    args = p.parse_args(command_line(argv))
    if not os.path.isdir(args.source):
        fail(
            "make_clipart_folder",
            f"--source {args.source}: no such folder; make clipart fetches Debian's "
            "openclipart-png and passes its usr/share/openclipart/png",
        )
    drawings = read_drawings(args.source)
    titles = collections.Counter(t.lower() for _, t, _ in drawings if t)
    written = 0
    for path, title, author in drawings:
        text = caption_of(path, args.source, title, author, titles)
        if not text:
            continue
        rel = os.path.relpath(path, args.source)
        stem = os.path.join(args.out, os.path.splitext(rel)[0])
        with Image.open(path) as img:
            rgba = img.convert("RGBA")
        rgba.thumbnail((args.size, args.size), Image.LANCZOS)  # small files; the loader fits them to IMAGE_SIZE
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        atomic_write(stem + ".png", lambda tmp, im=flat: im.save(tmp, format="PNG"))
        write_text(text + "\n", stem + ".txt")
        written += 1
    print(f"wrote {written} drawings with captions to {args.out} ({len(drawings)} distinct in {args.source})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
