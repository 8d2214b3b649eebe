"""Files written atomically: a temporary file in the target's own folder, then ``os.replace`` over the target.

A crash mid-write leaves the previous file whole (a rename within one file system is atomic; staging in /tmp
would not be). Below every room of ``ddpm/``: the run's ``run.json``, the evaluation's report and the
benchmark's Markdown all go through here. Imports nothing of the repo.
"""

import json
import os
import tempfile
from typing import Callable

TMP_PREFIX = ".tmp-"


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file over ``path``; on any error remove it and re-raise."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text(text: str, path: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    atomic_write(path, write)


def write_json(obj, path: str, *, allow_nan: bool = False) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, allow_nan=allow_nan, default=str)
            f.write("\n")
    atomic_write(path, write)


def read_json(path: str) -> dict:
    """The JSON object in ``path``, or {} when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
