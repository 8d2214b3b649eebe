"""A command's ``main`` called in the test's own process, for the paths that stop on bad input before any work.

A fresh Python costs several seconds here (torch, torchvision and open_clip load at start-up), and a bad input
stops before anything a process boundary would change: what the user sees is the SystemExit's code and the
one line on stderr, which these read. Each command keeps one subprocess test of the same path end to end
(test_bad_inputs.py, test_train_faults.py), where a traceback would show.
"""

import pytest


def exits(main, argv, capsys):
    """(exit code, stderr) of ``main(argv)``, which must stop through SystemExit."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return stop.value.code, capsys.readouterr().err


def one_line(err):
    """The last line of ``err``, after checking there is one and no traceback."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err and lines, err
    return lines[-1]
