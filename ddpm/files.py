"""Files written atomically: a temporary file in the target's own folder, then ``os.replace`` over the target.

A crash mid-write leaves the previous file whole (a rename within one file system is atomic; staging in /tmp
would not be). ``durable=True`` also fsyncs the file and then its folder, so that the rename itself survives a
power cut (checkpoints ask for it). A file gets the permissions the process's umask gives a new file (0644
under umask 022), as ``open()`` would: ``mkstemp``'s 0600 would hide a shared model from everyone else. The one
writer below every room of ``ddpm/``: checkpoints, exports, run.json, the probe, images, the reports.
Imports nothing of the repo.
"""

import json
import os
import tempfile
from typing import Callable, Optional

TMP_PREFIX = ".tmp-"


def umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc), else by setting it back."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def atomic_write(path: str, write: Callable[[str], None], *, durable: bool = False) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file over ``path``; on any error remove it and re-raise."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if durable:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_bytes(blob: bytes, path: str, *, durable: bool = False) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(blob)

    atomic_write(path, write, durable=durable)


def write_text(text: str, path: str) -> None:
    write_bytes(text.encode("utf-8"), path)


def write_json(obj, path: str, *, allow_nan: bool = False) -> None:
    write_text(json.dumps(obj, indent=2, allow_nan=allow_nan, default=str) + "\n", path)


def read_json(path: str) -> dict:
    """The JSON object in ``path``, or {} when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def unwritable_reason(folder: str) -> Optional[str]:
    """Why files cannot be created in ``folder`` (made when missing), or None; for checks before long work.

    An existing folder is probed by creating (and at once deleting) a temporary file in it, which also catches
    what permission bits do not say (/proc, a read-only mount, running as root); a missing one needs its nearest
    existing ancestor to be a writable folder.
    """
    folder = os.path.abspath(folder)
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing} is not a folder"
    if existing != folder:
        return (
            None
            if os.access(existing, os.W_OK | os.X_OK)
            else f"cannot create folders in {existing} (permission denied)"
        )
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=TMP_PREFIX):
            pass
    except OSError as err:
        return f"cannot write files in {folder} ({(err.strerror or str(err)).lower()})"
    return None
