"""A folder of captioned images: which files are images, and each one's caption (ADR 0019, 0052).

Splits (Hugging Face's imagefolder layout): where DATA_DIR holds a folder for ``DATASET_SPLIT`` (``train/``,
``test/``, ``validation/``, or their usual spellings ``training``, ``testing``, ``eval``, ``val``, ``valid``,
``dev``), the data is that folder; without one, "train" is DATA_DIR itself and another split is an error.

Images: every regular file under that folder (recursively) whose suffix is in ``images.IMAGE_SUFFIXES``, in
sorted path order; names starting with "." (``.DS_Store``, macOS ``._x.png`` forks, hidden folders) are ignored,
and so is every other file. A name with an image suffix that is no regular file (a FIFO, a socket, a dangling
link, a link loop) is a bad file: listed from its metadata alone, never opened, since reading a FIFO waits
forever. Links to images are followed wherever they point, so a folder of links to a photo library trains.

Captions, in this order of precedence:
1. a sidecar of the same stem beside the image: ``x.txt``, else ``x.caption`` (kohya's sd-scripts layout);
2. the caption column (``CAPTION_COLUMN``, ``text`` by default) of the row whose ``file_name`` is the image's
   path relative to the metadata file's folder, in a ``metadata.jsonl`` or ``metadata.csv`` anywhere under the
   split's folder (imagefolder's layout; ``file_name`` may name subfolders). Each image has one row: a second
   row for the same image is an error naming both lines.
The sidecar is the more specific of the two, so it wins where both exist. Caption and metadata files are text
that becomes training captions, sample prompts and part of a shared checkpoint, so they are read only when they
resolve inside DATA_DIR: a link pointing out of it is a bad file, not followed.

Caption bytes (``decode_caption``): UTF-8, with its BOM stripped when present; UTF-16 when it starts with a
BOM; otherwise bytes that are not UTF-8 are read as latin-1 when that gives printable text (recorded as a
note), and refused when it does not (NUL or control bytes: UTF-16 without BOM, binary). Whitespace runs,
newlines included, become single spaces. A missing or empty caption is a bad file.
"""

import codecs
import csv
import io
import json
import os
import stat
import unicodedata

from ddpm.data.images import IMAGE_SUFFIXES, BadFile

SIDECARS = (".txt", ".caption")
METADATA = ("metadata.jsonl", "metadata.csv")
SPLITS = {
    "train": ("train", "training"),
    "test": ("test", "testing", "eval"),
    "validation": ("validation", "valid", "val", "dev"),
}  # imagefolder's names for its splits


def split_root(root: str, split: str) -> str:
    """The folder the data of ``split`` lives in: ``root/<split or its alias>/`` where that folder exists; else, for
    "train" (the default), ``root`` itself, as a folder without split folders always was (a stray ``eval/`` among
    the images stays data). Another split with no folder of its own raises BadFile naming the split folders found."""
    present = {
        name: alias for name, aliases in SPLITS.items() for alias in aliases if os.path.isdir(os.path.join(root, alias))
    }
    if split in present:
        return os.path.join(root, present[split])
    if split == "train":
        return root
    found = f"its split folders are {', '.join(sorted(present.values()))}" if present else "it has no split folders"
    raise BadFile(root, f"no folder for DATASET_SPLIT = {split!r} ({' or '.join(SPLITS[split])}/): {found}")


def regular_file(path: str) -> bool:
    """Whether ``path`` (links followed) is a regular file; False for FIFOs, sockets, devices, dangling links."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _not_regular(path: str) -> BadFile:
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        what = (
            "a link loop"
            if os.path.islink(path) and err.errno == 40
            else "a dangling link"
            if os.path.islink(path)
            else f"unreadable ({err.strerror})"
        )
        return BadFile(path, f"not read: {what}")
    kind = (
        "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a folder"
        if stat.S_ISDIR(mode)
        else "special"
    )
    return BadFile(path, f"not a regular file ({kind}): not read")


def list_images(root: str) -> tuple:
    """(sorted image paths under ``root``, [BadFile] for names with an image suffix that are no regular file)."""
    good, bad = [], []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                continue
            path = os.path.join(folder, name)
            (good.append(path) if regular_file(path) else bad.append(_not_regular(path)))
    return sorted(good), sorted(bad, key=lambda b: b.path)


def check_inside(path: str, root: str) -> None:
    """BadFile unless ``path`` is a regular file whose real path lies inside ``root``'s."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([real, top]) != top:
        raise BadFile(
            path,
            f"a link to {real}, outside DATA_DIR: not read (copy the file into the folder; caption "
            "and metadata links are followed only within it)",
        )
    if not regular_file(path):
        raise _not_regular(path)


def decode_caption(raw: bytes, path: str) -> tuple:
    """Caption bytes → (text, note or None). Raises BadFile for bytes that are no text."""
    if raw.startswith(codecs.BOM_UTF8):
        text, note = raw[len(codecs.BOM_UTF8) :].decode("utf-8", errors="strict"), None
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


def metadata_files(root: str) -> list:
    """Every metadata.jsonl / metadata.csv under ``root`` (hidden folders left out), sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(folder, name) for name in files if name in METADATA]
    return sorted(found)


def _rows(path: str):
    """(line number, row dict) of a metadata file; BadFile naming the line for one that is not an object."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise BadFile(path, f"not UTF-8 ({err})") from None
    if path.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            for row in reader:
                yield reader.line_num, row
        except csv.Error as err:
            raise BadFile(f"{path}:{reader.line_num}", f"not a CSV row ({err})") from None
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise BadFile(f"{path}:{number}", f"not a JSON line ({err})") from None
        if not isinstance(row, dict):
            raise BadFile(f"{path}:{number}", "not a JSON object with file_name and a caption")
        yield number, row


def read_metadata(root: str, column: str = "text") -> dict:
    """{image path relative to ``root``: (caption, "metadata.jsonl line 3")} from every metadata file under
    ``root``; {} when there is none.

    A row's ``file_name`` is relative to its metadata file's folder. A row without a string ``file_name`` and
    ``column``, or a second row for the same image, raises BadFile naming the file and line.
    """
    out = {}
    for path in metadata_files(root):
        check_inside(path, root)
        base = os.path.relpath(os.path.dirname(path), root)
        for number, row in _rows(path):
            name, text = row.get("file_name"), row.get(column)
            if not isinstance(name, str) or not isinstance(text, str):
                raise BadFile(
                    f"{path}:{number}",
                    f"not a row with a string file_name and {column!r} (the caption "
                    f"column, CAPTION_COLUMN; the row has {', '.join(map(str, row))})",
                )
            key = os.path.normpath(os.path.join(base, name))
            if key in out:
                raise BadFile(
                    f"{path}:{number}",
                    f"file_name {name!r} already has a row ({out[key][1]}); each image takes one row",
                )
            out[key] = " ".join(text.split()), f"{os.path.relpath(path, root)} line {number}"
    return out


def caption_for(image: str, root: str, metadata: dict) -> tuple:
    """(caption, (caption file, note) or None) of one image by the precedence above; BadFile when missing or empty."""
    stem = os.path.splitext(image)[0]
    for suffix in SIDECARS:
        side = stem + suffix
        if os.path.lexists(side):
            check_inside(side, root)
            with open(side, "rb") as f:
                text, note = decode_caption(f.read(), side)
            if not text:
                raise BadFile(side, "empty caption")
            return text, (side, note) if note else None
    text, where = metadata.get(os.path.normpath(os.path.relpath(image, root)), (None, None))
    if text is None:
        raise BadFile(
            image, f"no caption: no {' or '.join(SIDECARS)} beside it and no row in a {' or '.join(METADATA)}"
        )
    if not text:
        raise BadFile(image, f"empty caption in {where}")
    return text, None


def caption_files(image: str, root: str) -> list:
    """The sidecars of ``image`` that are regular files inside ``root`` (they are part of the cache key)."""
    top, stem = os.path.realpath(root), os.path.splitext(image)[0]
    return [
        stem + s
        for s in SIDECARS
        if regular_file(stem + s) and os.path.commonpath([os.path.realpath(stem + s), top]) == top
    ]
