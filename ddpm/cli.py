"""What every command line of the repo shares: its words, and its one way to stop on bad input.

``command_line(argv)``: a ``main(argv=None)`` called from a shell gets ``sys.argv[1:]`` followed by the words of
the Makefile's ``ARGS``. make hands ``ARGS`` over as the environment variable ``DDPM_ARGS``, unexpanded, and it is
split here with ``shlex`` (quotes group words as a shell would), which never runs anything: a ``$(...)``, a
backtick or a ``;`` in it stays a character of some argument. The variable is removed once read, so that a
command's own subprocesses (a sweep's training runs) do not take it as theirs.

``fail(prog, message)``: one line on stderr, exit code 2 (bad input), never a traceback; ``error`` prints the
same line and returns the code, for a ``main`` that returns its exit status.

Below every room of ``ddpm/``, beside ``files.py``: imports nothing of the repo.
"""

import os
import shlex
import sys

MAKE_ARGS = "DDPM_ARGS"


def error(prog: str, message: str, code: int = 2) -> int:
    """Print ``prog: message`` on stderr (one line, or one per problem a message lists); returns ``code``."""
    print(f"{prog}: {message}", file=sys.stderr, flush=True)
    return code


def fail(prog: str, message: str, code: int = 2):
    """Stop with ``prog: message`` on stderr and exit ``code`` (2: the input was wrong)."""
    sys.exit(error(prog, message, code))


def command_line(argv=None, *, prog: str = None) -> list:
    """``argv`` when given (a test, a caller in Python); else this process's arguments and the Makefile's ARGS."""
    if argv is not None:
        return list(argv)
    extra = os.environ.pop(MAKE_ARGS, "")
    try:
        words = shlex.split(extra)
    except ValueError as err:  # an unclosed quote
        fail(
            prog or os.path.basename(sys.argv[0]),
            f"ARGS={extra!r}: {err} (quote each value as a shell would: "
            f"ARGS='--set CIFAR10_CAPTION=\"a photo of {{}}\"')",
        )
    return sys.argv[1:] + words
