"""Replaying the decisions: the constants that the Accepted ADRs decide, and how config.py differs from them.

Below both the check (``check.py``) and the scaffold of new ADRs (``scaffold.py``), which each build on it.
config.py is read with ``ast`` only (``config_file.read_config``): it is never imported or executed here.
"""

from __future__ import annotations

from pathlib import Path

from ddpm.decisions.adr import ADR, MISSING, NEW, REMOVED, fmt, load_adrs, rel_path, same
from ddpm.decisions.config_file import read_config

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "config.py"
DEFAULT_DIR = REPO_ROOT / "decisions"


def _replay(adrs: list[ADR]) -> tuple[dict, dict, list[str]]:
    values, origin, errors = {}, {}, []
    for adr in adrs:
        if not adr.counts:
            continue
        where = rel_path(adr.path)
        for d in adr.decisions:
            have = values.get(d.name, MISSING)
            if d.old == NEW:
                if have is not MISSING:
                    errors.append(
                        f"{where}:{d.line}: stale ADR {adr.label}: it introduces {d.name} as (new), but "
                        f"{d.name} = {fmt(have)} already exists at that point (decided by ADR "
                        f"{origin[d.name]:04d}); write `- {d.name}: {fmt(have)} → {fmt(d.new)}`"
                    )
            elif have is MISSING:
                errors.append(
                    f"{where}:{d.line}: stale ADR {adr.label}: it expects {d.name} = {fmt(d.old)}, but no "
                    f"earlier ADR introduces {d.name}; write `- {d.name}: (new) → {fmt(d.new)}`"
                )
            elif not same(have, d.old):
                errors.append(
                    f"{where}:{d.line}: stale ADR {adr.label}: it expects {d.name} = {fmt(d.old)}, but at that "
                    f"point {d.name} = {fmt(have)} (decided by ADR {origin[d.name]:04d})"
                )
            if d.new == REMOVED:
                values.pop(d.name, None)
            else:
                values[d.name] = d.new
            origin[d.name] = adr.number
    return values, origin, errors


def replay(decisions_dir) -> tuple[dict, dict]:
    """The constants decided by the Accepted and Superseded ADRs, replayed in number order.

    Returns (values: name -> value, origin: name -> number of the ADR that last decided it). Errors are
    ignored here; see ``check``.
    """
    adrs, _ = load_adrs(decisions_dir)
    values, origin, _ = _replay(adrs)
    origin = {k: v for k, v in origin.items() if k in values}
    return values, origin


def diff(config_path, decisions_dir) -> dict:
    """name -> (decided value or MISSING, config.py value or MISSING), for every constant where they differ."""
    current = read_config(config_path)
    decided, _ = replay(decisions_dir)
    out = {}
    for name in list(decided) + [n for n in current if n not in decided]:
        a, b = decided.get(name, MISSING), current.get(name, MISSING)
        if not same(a, b):
            out[name] = (a, b)
    return out
