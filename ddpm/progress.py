"""Progress for work that takes more than a few seconds (decoding a folder, training the probe, make eval's
sampling): tqdm's bar on a terminal; off one (``> log``, nohup, CI), where a bar's carriage returns make one
endless line, a plain line every ``EVERY_SECONDS`` and one at the end, saying how far it is and how long is left.
Training's own lines, which add the loss and the learning rate, are ``ddpm/training/monitor.py``'s.
"""

import sys
import time

from tqdm import tqdm

EVERY_SECONDS = 30.0  # off a terminal: the longest silence between two lines


class Lines:
    """The part of tqdm's interface the repo uses (``update``, iteration, ``with``), written as lines:
    ``sampling at guidance 3: 1,200/3,000 steps (40%), about 3 min left``."""

    def __init__(self, iterable=None, *, total: int = None, desc: str = "", unit: str = "it", out=None):
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n, self.out = 0, out or sys.stdout
        self.start = self.said = time.perf_counter()

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.perf_counter()
        if now - self.said >= EVERY_SECONDS and (self.total is None or self.n < self.total):  # the end says it
            self.said = now
            self._say(now)

    def _say(self, now: float, end: bool = False) -> None:
        done = (
            f"{self.n:,}/{self.total:,} {self.unit}s ({self.n / max(self.total, 1):.0%})"
            if self.total
            else f"{self.n:,}"
        )
        minutes = (now - self.start) / 60
        if end:
            tail = f"done in {minutes:.1f} min"
        elif self.total:
            tail = f"about {minutes / max(self.n, 1) * (self.total - self.n):.0f} min left"
        else:
            tail = f"{minutes:.0f} min so far"
        print(f"{self.desc}: {done}, {tail}", file=self.out, flush=True)

    def close(self) -> None:
        if self.n:
            self._say(time.perf_counter(), end=True)
            self.n = 0  # closed: a second close says nothing

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress(
    iterable=None, *, total: int = None, desc: str, unit: str = "it", leave: bool = True, show=True, terminal=None
):
    """A tqdm bar where stderr is a terminal, ``Lines`` elsewhere (``terminal`` None: stderr decides); nothing
    when ``show`` is False."""
    terminal = sys.stderr.isatty() if terminal is None else terminal
    if show and not terminal:
        return Lines(iterable, total=total, desc=desc, unit=unit)
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True, disable=not show)
