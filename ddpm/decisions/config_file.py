"""config.py, read: its top-level ``NAME = <literal>`` assignments with UPPER_CASE names, parsed with ``ast`` and
never executed, so that reading the config cannot run code and every value is a literal the decisions check can
compare. The one reader of config.py: train.py, the decisions check, sweeps, the bench and the profiler use it.
"""

import ast
from pathlib import Path

from ddpm.decisions.adr import UPPER_NAME_RE


class ConfigError(ValueError):
    """config.py cannot be read: missing, not UTF-8, or not Python; the message names the file and line."""


def read_config_with_lines(path) -> tuple[dict, dict]:
    """Top-level ``NAME = <literal>`` assignments of config.py (UPPER_CASE names): (values, line numbers).

    The one reader of config.py: it is parsed, never executed. Raises ConfigError in one line naming the file
    and line."""
    try:
        source = Path(path).read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as err:
        raise ConfigError(f"{err.filename or path}:{err.lineno}: syntax error: {err.msg}; fix that line") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"{path}: cannot read ({err}); pass --config, or restore config.py (git checkout config.py)"
        ) from None
    values, lines = {}, {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and UPPER_NAME_RE.match(target.id):
                try:
                    values[target.id] = ast.literal_eval(value)
                except ValueError:
                    continue
                lines[target.id] = node.lineno
    return values, lines


def read_config(path) -> dict:
    """Top-level ``NAME = <literal>`` assignments of config.py with an UPPER_CASE name, never executing it."""
    return read_config_with_lines(path)[0]
