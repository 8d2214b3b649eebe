"""A folder of captioned images: which files are images, and each one's caption (ADR 0019).

Images: every file under the folder (recursively) whose suffix is in ``images.IMAGE_SUFFIXES``, in sorted
path order; names starting with "." (``.DS_Store``, macOS ``._x.png`` forks, hidden folders) are ignored,
and so is every other file.

Captions, in this order of precedence:
1. a sidecar of the same stem beside the image: ``x.txt``, else ``x.caption`` (kohya's sd-scripts layout);
2. the ``text`` of the line whose ``file_name`` is the image's path relative to the folder, in a top-level
   ``metadata.jsonl`` (Hugging Face's imagefolder layout).
The sidecar is the more specific of the two, so it wins where both exist.

Caption bytes (``decode_caption``): UTF-8, with its BOM stripped when present; UTF-16 when it starts with a
BOM; otherwise bytes that are not UTF-8 are read as latin-1 when that gives printable text (recorded as a
note), and refused when it does not (NUL or control bytes: UTF-16 without BOM, binary). Whitespace runs,
newlines included, become single spaces. A missing or empty caption is a bad file.
"""

import codecs
import json
import os
import unicodedata

from ddpm.data.images import IMAGE_SUFFIXES, BadFile

SIDECARS = (".txt", ".caption")
METADATA = "metadata.jsonl"


def list_images(root: str) -> list:
    """Sorted image paths under ``root``, hidden files and folders and non-images left out."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.join(folder, f) for f in files
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES]
    return sorted(out)


def decode_caption(raw: bytes, path: str) -> tuple:
    """Caption bytes → (text, note or None). Raises BadFile for bytes that are no text."""
    if raw.startswith(codecs.BOM_UTF8):
        text, note = raw[len(codecs.BOM_UTF8):].decode("utf-8", errors="strict"), None
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text, note = raw.decode("utf-16"), None
        except UnicodeDecodeError as err:
            raise BadFile(path, f"caption has a UTF-16 BOM but is not UTF-16: {err}") from None
    else:
        try:
            text, note = raw.decode("utf-8"), None
        except UnicodeDecodeError:
            text, note = raw.decode("latin-1"), "caption is not UTF-8; read as latin-1"
    if any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in text):
        raise BadFile(path, "caption bytes are not text (control or NUL bytes: UTF-16 without a BOM, or binary)")
    return " ".join(text.split()), note


def read_metadata(root: str) -> dict:
    """{relative image path: raw caption} from ``root/metadata.jsonl``; {} when there is none.

    A line that is not a JSON object with string ``file_name`` and ``text`` raises BadFile naming the line.
    """
    path = os.path.join(root, METADATA)
    if not os.path.isfile(path):
        return {}
    out = {}
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8-sig"))
                name, text = row["file_name"], row["text"]
                if not isinstance(name, str) or not isinstance(text, str):
                    raise TypeError("file_name and text must be strings")
            except (ValueError, KeyError, TypeError) as err:
                raise BadFile(f"{path}:{number}", f"not a metadata line with file_name and text ({err})") from None
            out[os.path.normpath(name)] = " ".join(text.split())
    return out


def caption_for(image: str, root: str, metadata: dict) -> tuple:
    """(caption, (caption file, note) or None) of one image by the precedence above; BadFile when missing or empty."""
    stem = os.path.splitext(image)[0]
    for suffix in SIDECARS:
        side = stem + suffix
        if os.path.isfile(side):
            with open(side, "rb") as f:
                text, note = decode_caption(f.read(), side)
            if not text:
                raise BadFile(side, "empty caption")
            return text, (side, note) if note else None
    text = metadata.get(os.path.normpath(os.path.relpath(image, root)))
    if text is None:
        raise BadFile(image, f"no caption: no {' or '.join(SIDECARS)} beside it and no line in {METADATA}")
    if not text:
        raise BadFile(image, f"empty caption in {METADATA}")
    return text, None


def caption_files(image: str) -> list:
    """The sidecar paths that exist for ``image`` (they are part of the cache key)."""
    stem = os.path.splitext(image)[0]
    return [stem + s for s in SIDECARS if os.path.isfile(stem + s)]
