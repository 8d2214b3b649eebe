"""Progress off a terminal (issue 42): lines at most ``EVERY_SECONDS`` apart and one at the end, not a bar's carriage
returns; a bar on a terminal; nothing when asked for none. The clock is the test's, so nothing sleeps."""

import io

from tqdm import tqdm

from ddpm import progress as progress_module
from ddpm.progress import Lines, progress


def test_off_a_terminal_a_line_every_interval_and_one_at_the_end(monkeypatch):
    clock = iter(float(t) for t in range(0, 1000, 10))  # each call 10 s later
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: next(clock))
    out = io.StringIO()
    lines = Lines(range(12), desc="sampling at guidance 3", unit="step", out=out)
    assert list(lines) == list(range(12))
    said = out.getvalue().splitlines()
    assert said[0] == "sampling at guidance 3: 3/12 steps (25%), about 2 min left"  # 30 s for 3: 90 s for 9 more
    assert (
        len(said) == 4 and said[-1] == "sampling at guidance 3: 12/12 steps (100%), done in 2.2 min"
    )  # closed at 130 s
    assert "\r" not in out.getvalue()


def test_a_bar_on_a_terminal_lines_elsewhere_and_nothing_when_not_shown(capsys):
    assert isinstance(progress(total=3, desc="x", terminal=True), tqdm)
    assert isinstance(progress(total=3, desc="x", terminal=False), Lines)
    capsys.readouterr()
    with progress(total=3, desc="x", show=False, terminal=False) as bar:
        bar.update(3)
    assert capsys.readouterr() == ("", "")
