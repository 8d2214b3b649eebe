"""Architecture Decision Records (ADRs) that argue every value in config.py, and the check that they agree.

This module holds what the records mean together: replaying the Accepted (and Superseded) ADRs in number
order from an empty state must give exactly the top-level UPPER_CASE constants of config.py. ``python -m
ddpm.decisions.check check`` verifies that, and the format of the records; ``index`` regenerates the table in
decisions/README.md; ``diff`` prints where config.py differs from the decisions, as decision lines; ``new``
scaffolds the next ADR, pre-filled with those lines (``ddpm.decisions.scaffold``).

The record format (parsing an ADR file, reading config.py) is ``ddpm.decisions.adr``. config.py is read with ``ast``
only: it is never imported or executed here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# MISSING, same, read_config and parse_adr are also used as ``decisions.<name>`` by callers of the old home.
from ddpm.cli import command_line, error
from ddpm.decisions.adr import (  # noqa: F401
    ADR,
    MISSING,
    NEW,
    REMOVED,
    decision_lines,
    fmt,
    load_adrs,
    parse_adr,
    rel_path,
    same,
)
from ddpm.decisions.config_file import ConfigError, read_config, read_config_with_lines  # noqa: F401
from ddpm.decisions.replay import DEFAULT_CONFIG, DEFAULT_DIR, REPO_ROOT, _replay, diff, replay  # noqa: F401
from ddpm.decisions.scaffold import new_adr

INDEX_START = "<!-- adr-index:start -->"
INDEX_END = "<!-- adr-index:end -->"
MAKE_HINT = 'make adr TITLE="..."'


# --------------------------------------------------------------------------------------------------------------
# replay and check


def _format_errors(adrs: list[ADR], decisions_dir) -> list[str]:
    errors = []
    by_number: dict[int, list[ADR]] = {}
    for adr in adrs:
        by_number.setdefault(adr.number, []).append(adr)
        errors.extend(adr.errors)
    for number, group in sorted(by_number.items()):
        if len(group) > 1:
            names = ", ".join(a.path.name for a in group)
            for adr in group[1:]:
                errors.append(f"{rel_path(adr.path)}:1: duplicate ADR number {number:04d} ({names}); renumber one")
    if by_number:
        top = max(by_number)
        missing = [n for n in range(1, top + 1) if n not in by_number]
        if missing:
            listed = ", ".join(f"{n:04d}" for n in missing)
            errors.append(
                f"{rel_path(Path(decisions_dir))}/: missing ADR number(s) {listed} (numbers must run 0001..{top:04d} "
                "without gaps; a withdrawn idea stays as a Rejected ADR)"
            )
    for adr in adrs:
        if adr.status == "Superseded" and adr.superseded_by not in by_number:
            errors.append(
                f"{rel_path(adr.path)}:{adr.status_line}: `Superseded by {adr.superseded_by:04d}` points to an ADR "
                "that does not exist"
            )
        elif adr.status == "Superseded" and adr.superseded_by == adr.number:
            errors.append(f"{rel_path(adr.path)}:{adr.status_line}: ADR {adr.label} cannot supersede itself")
    return errors


def check(config_path, decisions_dir, *, index: bool = True) -> list[str]:
    """Every problem with the ADRs and their agreement with config.py, as readable strings (empty when clean).

    ``index=False`` leaves out the (cosmetic) check that the index table in decisions/README.md is current.
    """
    config_path, decisions_dir = Path(config_path), Path(decisions_dir)
    if not decisions_dir.is_dir():
        return [f"{rel_path(decisions_dir)}: no decisions directory"]
    adrs, errors = load_adrs(decisions_dir)
    errors += _format_errors(adrs, decisions_dir)
    values, origin, replay_errors = _replay(adrs)
    errors += replay_errors

    try:
        current, lines = read_config_with_lines(config_path)
    except ConfigError as exc:
        errors.append(f"{rel_path(config_path)}: cannot read config: {exc}")
        current, lines = None, {}
    if current is not None:
        cfg = rel_path(config_path)
        for name, value in current.items():
            at = f"{cfg}:{lines[name]}"
            if name not in values:
                errors.append(
                    f"{at}: {name} = {fmt(value)} is not introduced by any Accepted ADR: write an ADR: "
                    f"{MAKE_HINT} (it will say `- {name}: (new) → {fmt(value)}`), then mark it Accepted"
                )
            elif not same(values[name], value):
                errors.append(
                    f"{at}: config.py has {name} = {fmt(value)} but ADR {origin[name]:04d} decided {name} = "
                    f"{fmt(values[name])}: write an ADR: {MAKE_HINT} — or restore {name} = {fmt(values[name])}"
                )
        for name, value in values.items():
            if name not in current:
                errors.append(
                    f"{cfg}: {name} = {fmt(value)} (decided by ADR {origin[name]:04d}) is missing from config.py: "
                    f"restore {name} = {fmt(value)} — or write an ADR: {MAKE_HINT} with `- {name}: {fmt(value)} "
                    f"→ (removed)`"
                )
        for adr in adrs:
            if (
                adr.status == "Proposed"
                and adr.decisions
                and all(
                    same(current.get(d.name, MISSING), MISSING if d.new == REMOVED else d.new) for d in adr.decisions
                )
            ):
                errors.append(
                    f"{rel_path(adr.path)}:{adr.status_line}: ADR {adr.label} is Proposed but config.py already has "
                    "all its values: mark it Accepted (or Rejected, and restore the values)"
                )

    if index:
        readme = decisions_dir / "README.md"
        try:
            text = readme.read_text(encoding="utf-8") if readme.exists() else None
        except (OSError, UnicodeDecodeError):
            text = None
        if text is None or render_readme(text, adrs) != text:
            errors.append(f"{rel_path(readme)}: index is stale: run make decisions")
    return errors


def newest_accepted(decisions_dir) -> tuple[int, str] | None:
    """(number, title) of the highest-numbered Accepted ADR, or None."""
    adrs, _ = load_adrs(decisions_dir)
    accepted = [a for a in adrs if a.status == "Accepted"]
    if not accepted:
        return None
    top = accepted[-1]
    return top.number, top.title


# --------------------------------------------------------------------------------------------------------------
# index


def render_index(adrs: list[ADR]) -> str:
    """One row per ADR: its number, status, the constants it changed, and its finding (the `## Finding` line, else
    its title, which the older records wrote as a finding), so the findings stay current without a README."""
    rows = ["| ADR | Finding | Status | Date | Constants |", "| --- | --- | --- | --- | --- |"]
    for adr in adrs:
        names = ", ".join(f"`{d.name}`" for d in adr.decisions) or "—"
        finding = (adr.finding or adr.title or "?").replace("|", "\\|")
        status = (adr.status_text or "?").replace("|", "\\|")
        rows.append(f"| [{adr.label}]({adr.path.name}) | {finding} | {status} | {adr.date or '?'} | {names} |")
    if not adrs:
        rows.append("| — | No ADRs yet | | | |")
    return "\n".join(rows)


def render_readme(text: str, adrs: list[ADR]) -> str:
    """``text`` with the index between the markers regenerated (markers appended when absent)."""
    block = f"{INDEX_START}\n{render_index(adrs)}\n{INDEX_END}"
    start, end = text.find(INDEX_START), text.find(INDEX_END)
    if start != -1 and end > start:
        return text[:start] + block + text[end + len(INDEX_END) :]
    sep = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
    if text and not text.endswith("\n\n") and text.endswith("\n"):
        sep = "\n"
    return f"{text}{sep}## Index\n\n{block}\n"


def update_index(decisions_dir) -> bool:
    """Regenerate the index in decisions/README.md; returns whether the file changed."""
    readme = Path(decisions_dir) / "README.md"
    old = readme.read_text(encoding="utf-8") if readme.exists() else ""
    adrs, _ = load_adrs(decisions_dir)
    new = render_readme(old, adrs)
    if new == old and readme.exists():
        return False
    readme.write_text(new, encoding="utf-8")
    return True


# --------------------------------------------------------------------------------------------------------------
# CLI


def _summary(config_path, decisions_dir) -> str:
    adrs, _ = load_adrs(decisions_dir)
    counts = {}
    for a in adrs:
        counts[a.status] = counts.get(a.status, 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    n_const = len(read_config(config_path))
    newest = newest_accepted(decisions_dir)
    tail = f"; newest Accepted: {newest[0]:04d} {newest[1]}" if newest else ""
    return f"decisions OK: {len(adrs)} ADRs ({parts or 'none'}), {n_const} constants in config.py all decided{tail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ddpm.decisions.check", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)

    def common(p):
        p.add_argument("--config", default=str(DEFAULT_CONFIG), help="config.py to check (default: %(default)s)")
        p.add_argument("--dir", default=str(DEFAULT_DIR), help="decisions directory (default: %(default)s)")

    p = sub.add_parser("check", help="replay the ADRs and compare with config.py; exit 1 on any error")
    common(p)
    p.add_argument("--fix-index", action="store_true", help="regenerate the index in README.md first")
    p = sub.add_parser("index", help="regenerate the ADR table in decisions/README.md")
    common(p)
    p = sub.add_parser("new", help="write the next ADR from template.md, pre-filled with config.py's changes")
    common(p)
    p.add_argument("--title", required=True)
    p.add_argument("--supersedes", type=int, default=None, metavar="N", help="mark ADR N `Superseded by` this one")
    p.add_argument("--date", default=None, help="YYYY-MM-DD (default: today)")
    p.add_argument(
        "--from",
        dest="results",
        default=None,
        metavar="RUNS/SWEEP",
        help="decision lines and Context from a sweep's or ladder's results.json (make adr FROM=runs/<sweep>)",
    )
    p = sub.add_parser("diff", help="print `- NAME: decided → config.py` lines where config.py differs")
    common(p)
    args = parser.parse_args(command_line(argv))

    if args.verb == "index":
        changed = update_index(args.dir)
        print(f"{rel_path(Path(args.dir) / 'README.md')}: index {'updated' if changed else 'up to date'}")
        return 0
    if args.verb == "check":
        if args.fix_index:
            update_index(args.dir)
        errors = check(args.config, args.dir)
        if errors:
            print(f"decisions check failed ({len(errors)} error{'s' if len(errors) != 1 else ''}):", file=sys.stderr)
            for e in errors:
                print(f"  {e}", file=sys.stderr)
            return 1
        print(_summary(args.config, args.dir))
        return 0
    if args.verb == "diff":
        lines = decision_lines(diff(args.config, args.dir))
        print("\n".join(lines) if lines else "config.py matches the decisions")
        return 0
    if args.verb == "new":
        try:
            path = new_adr(
                args.title,
                config_path=args.config,
                decisions_dir=args.dir,
                supersedes=args.supersedes,
                date=args.date,
                results=args.results,
            )
        except ValueError as exc:
            return error("error", str(exc))
        print(rel_path(path))
        return 0
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
