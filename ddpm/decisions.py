"""Architecture Decision Records (ADRs) that argue every value in config.py, and the check that they agree.

Each ``decisions/NNNN-kebab-title.md`` states, inside its ``## Decision`` section, one machine-readable line per
constant it changes::

    - LEARNING_RATE: 5e-6 → 5e-5 (10x for plateau breaking)
    - CHANNEL_MULTS: (new) → (1, 2, 2)
    - OLD_KNOB: 3 → (removed)

Replaying the Accepted (and Superseded) ADRs in number order from an empty state must give exactly the
top-level UPPER_CASE constants of config.py. ``python -m ddpm.decisions check`` verifies that, and the
format of the records; ``index`` regenerates the table in decisions/README.md; ``new`` scaffolds the next
ADR, pre-filled with whatever config.py currently changes relative to the decisions.

config.py is read with ``ast`` only: it is never imported or executed here.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "config.py"
DEFAULT_DIR = REPO_ROOT / "decisions"

INDEX_START = "<!-- adr-index:start -->"
INDEX_END = "<!-- adr-index:end -->"
IGNORED_FILES = {"README.md", "template.md"}
FILENAME_RE = re.compile(r"^(\d{4})-[a-z0-9]+(?:-[a-z0-9]+)*\.md$")
HEADER_RE = re.compile(r"^#\s+(\d{4}):\s*(\S.*?)\s*$")
DATE_RE = re.compile(r"^Date:\s*(\S.*?)\s*$")
SECTION_RE = re.compile(r"^##\s+(\S.*?)\s*$")
DECISION_LINE_RE = re.compile(r"^-\s+([A-Z][A-Z0-9_]*)\s*:(.*)$")
SUPERSEDED_RE = re.compile(r"^Superseded by\s+\[?(?:ADR\s*)?(\d{1,4})\b")
UPPER_NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
ARROWS = ("→", "->")
REQUIRED_SECTIONS = ("Status", "Context", "Decision", "Alternatives Considered", "Consequences")
STATUSES = ("Proposed", "Accepted", "Rejected", "Superseded by NNNN")
MAKE_HINT = 'make adr TITLE="..."'


class _Missing:
    """Marks a constant that does not exist (not in config.py, or never decided)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING = _Missing()
NEW = "(new)"  # the old side of a line that introduces a constant
REMOVED = "(removed)"  # the new side of a line that deletes a constant


@dataclass
class Decision:
    name: str
    old: object  # a Python value, or NEW
    new: object  # a Python value, or REMOVED
    reason: str | None
    line: int


@dataclass
class ADR:
    path: Path
    number: int | None  # from the file name
    title: str = ""
    date: str = ""
    status: str = ""  # "Proposed", "Accepted", "Rejected", "Superseded", or the raw unknown text
    superseded_by: int | None = None
    status_line: int = 0
    decisions: list[Decision] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def counts(self) -> bool:
        """Whether its decisions take part in the replay."""
        return self.status in ("Accepted", "Superseded")

    @property
    def label(self) -> str:
        return f"{self.number:04d}" if self.number is not None else self.path.name

    @property
    def status_text(self) -> str:
        if self.status == "Superseded":
            return f"Superseded by {self.superseded_by:04d}"
        return self.status


# --------------------------------------------------------------------------------------------------------------
# values


def same(a, b) -> bool:
    """Type-aware equality: 1 != 1.0, (16, 8) != [16, 8], True != 1."""
    if a is MISSING or b is MISSING:
        return a is b
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, set):
        return a == b
    return a == b


def fmt(value) -> str:
    """A Python literal for ``value``, in config.py style (double-quoted strings)."""
    if value is MISSING:
        return "MISSING"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        try:
            if ast.literal_eval(text) == value:
                return text
        except (ValueError, SyntaxError):
            pass
        return repr(value)
    if isinstance(value, tuple):
        inner = ", ".join(fmt(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{fmt(k)}: {fmt(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _literal(text: str):
    """Parse one side of a decision line; raises ValueError when it is not a literal."""
    text = text.strip()
    if len(text) >= 2 and text[0] == "`" and text[-1] == "`":
        text = text[1:-1].strip()
    if not text:
        raise ValueError("empty value")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


def _parse_old(text: str):
    stripped = text.strip().strip("`").strip()
    if stripped == NEW:
        return NEW
    return _literal(text)


def _parse_new(text: str):
    """``value`` or ``value (reason)``; returns (value, reason)."""
    text = text.strip()
    candidates = [(text, None)]
    for m in re.finditer(r"\s\(", text):
        head, tail = text[: m.start()], text[m.start() :].strip()
        tail_core = tail.rstrip(".").rstrip()
        if tail_core.startswith("(") and tail_core.endswith(")"):
            candidates.append((head, tail_core[1:-1].strip()))
    for value_text, reason in candidates:
        stripped = value_text.strip().strip("`").strip()
        if stripped == REMOVED:
            return REMOVED, reason
        try:
            return _literal(value_text), reason
        except ValueError:
            continue
    raise ValueError("no literal value")


def parse_decision_line(rest: str):
    """Parse what follows ``- NAME:``; returns (old, new, reason) or raises ValueError."""
    positions = []
    for arrow in ARROWS:
        start = 0
        while (i := rest.find(arrow, start)) != -1:
            positions.append((i, len(arrow)))
            start = i + 1
    for i, width in sorted(positions):
        try:
            old = _parse_old(rest[:i])
            new, reason = _parse_new(rest[i + width :])
        except ValueError:
            continue
        return old, new, reason
    if not positions:
        raise ValueError("no arrow (→ or ->) between the old and the new value")
    raise ValueError("expected `old → new` with Python literals (or (new) / (removed)), optionally `(reason)`")


# --------------------------------------------------------------------------------------------------------------
# reading


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_config_with_lines(path) -> tuple[dict, dict]:
    """Top-level ``NAME = <literal>`` assignments of config.py (UPPER_CASE names): (values, line numbers)."""
    source = Path(path).read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
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


def parse_adr(path) -> ADR:
    path = Path(path)
    m = FILENAME_RE.match(path.name)
    adr = ADR(path=path, number=int(m.group(1)) if m else None)
    where = _rel(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        adr.errors.append(f"{where}:1: cannot read: {exc}")
        return adr
    lines = text.splitlines()

    # the title line
    first = next(((i, ln) for i, ln in enumerate(lines, 1) if ln.strip()), (1, ""))
    hm = HEADER_RE.match(first[1].strip())
    if not hm:
        adr.errors.append(f"{where}:{first[0]}: first line must be `# NNNN: Title`, found {first[1].strip()!r}")
    else:
        adr.title = hm.group(2)
        if adr.number is not None and int(hm.group(1)) != adr.number:
            adr.errors.append(
                f"{where}:{first[0]}: title line says ADR {hm.group(1)} but the file name says {adr.number:04d}"
            )

    section = None
    in_comment = in_fence = False
    seen_sections = set()
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        # fenced code (examples) and HTML comments (the template's guidance) are not part of the record
        if line.startswith("```") or line.startswith("~~~"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if in_comment:
            if "-->" in line:
                in_comment = False
            continue
        if line.startswith("<!--"):
            in_comment = "-->" not in line
            continue
        sm = SECTION_RE.match(line)
        if sm and not line.startswith("###"):
            section = sm.group(1).lower()
            seen_sections.add(section)
            continue
        if section is None:
            dm = DATE_RE.match(line)
            if dm and not adr.date:
                adr.date = dm.group(1)
                try:
                    _dt.date.fromisoformat(adr.date)
                    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", adr.date):
                        raise ValueError
                except ValueError:
                    adr.errors.append(f"{where}:{lineno}: Date must be YYYY-MM-DD, found {adr.date!r}")
            continue
        if section == "status" and not adr.status_line and line:
            adr.status_line = lineno
            status = line.strip("*_ ")
            if status in ("Proposed", "Accepted", "Rejected"):
                adr.status = status
            elif sup := SUPERSEDED_RE.match(status):
                adr.status = "Superseded"
                adr.superseded_by = int(sup.group(1))
            else:
                adr.status = status
                adr.errors.append(
                    f"{where}:{lineno}: unknown status {status!r}: use Proposed, Accepted, Rejected or "
                    "`Superseded by NNNN`"
                )
        elif section == "decision" and (dm := DECISION_LINE_RE.match(line)):
            name, rest = dm.group(1), dm.group(2)
            try:
                old, new, reason = parse_decision_line(rest)
            except ValueError as exc:
                adr.errors.append(f"{where}:{lineno}: malformed decision line for {name}: {exc}: {line!r}")
                continue
            if old == NEW and new == REMOVED:
                adr.errors.append(f"{where}:{lineno}: malformed decision line for {name}: (new) → (removed)")
                continue
            adr.decisions.append(Decision(name, old, new, reason, lineno))

    if not adr.date:
        adr.errors.append(f"{where}:2: missing `Date: YYYY-MM-DD` line under the title")
    if "status" in seen_sections and not adr.status_line:
        adr.errors.append(f"{where}:1: empty `## Status` section: write Proposed, Accepted, Rejected or ...")
    for name in REQUIRED_SECTIONS:
        if name.lower() not in seen_sections:
            adr.errors.append(f"{where}:1: missing `## {name}` section")
    seen = {}
    for d in adr.decisions:
        if d.name in seen:
            adr.errors.append(
                f"{where}:{d.line}: {d.name} is decided twice in this ADR (also line {seen[d.name]})"
            )
        seen[d.name] = d.line
    return adr


def _md_files(decisions_dir) -> list[Path]:
    d = Path(decisions_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix == ".md" and p.name not in IGNORED_FILES)


def load_adrs(decisions_dir) -> tuple[list[ADR], list[str]]:
    """All well-named ADRs, sorted by number (then file name), and the errors about file names."""
    adrs, errors = [], []
    for p in _md_files(decisions_dir):
        if not FILENAME_RE.match(p.name):
            errors.append(
                f"{_rel(p)}:1: file name does not match NNNN-kebab-title.md (4 digits, lower-case words joined "
                "by '-'); it is ignored"
            )
            continue
        adrs.append(parse_adr(p))
    adrs.sort(key=lambda a: (a.number, a.path.name))
    return adrs, errors


# --------------------------------------------------------------------------------------------------------------
# replay and check


def _replay(adrs: list[ADR]) -> tuple[dict, dict, list[str]]:
    values, origin, errors = {}, {}, []
    for adr in adrs:
        if not adr.counts:
            continue
        where = _rel(adr.path)
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
                errors.append(f"{_rel(adr.path)}:1: duplicate ADR number {number:04d} ({names}); renumber one")
    if by_number:
        top = max(by_number)
        missing = [n for n in range(1, top + 1) if n not in by_number]
        if missing:
            listed = ", ".join(f"{n:04d}" for n in missing)
            errors.append(
                f"{_rel(Path(decisions_dir))}/: missing ADR number(s) {listed} (numbers must run 0001..{top:04d} "
                "without gaps; a withdrawn idea stays as a Rejected ADR)"
            )
    for adr in adrs:
        if adr.status == "Superseded" and adr.superseded_by not in by_number:
            errors.append(
                f"{_rel(adr.path)}:{adr.status_line}: `Superseded by {adr.superseded_by:04d}` points to an ADR "
                "that does not exist"
            )
        elif adr.status == "Superseded" and adr.superseded_by == adr.number:
            errors.append(f"{_rel(adr.path)}:{adr.status_line}: ADR {adr.label} cannot supersede itself")
    return errors


def check(config_path, decisions_dir, *, index: bool = True) -> list[str]:
    """Every problem with the ADRs and their agreement with config.py, as readable strings (empty when clean).

    ``index=False`` leaves out the (cosmetic) check that the index table in decisions/README.md is current.
    """
    config_path, decisions_dir = Path(config_path), Path(decisions_dir)
    if not decisions_dir.is_dir():
        return [f"{_rel(decisions_dir)}: no decisions directory"]
    adrs, errors = load_adrs(decisions_dir)
    errors += _format_errors(adrs, decisions_dir)
    values, origin, replay_errors = _replay(adrs)
    errors += replay_errors

    try:
        current, lines = read_config_with_lines(config_path)
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        errors.append(f"{_rel(config_path)}: cannot read config: {exc}")
        current, lines = None, {}
    if current is not None:
        cfg = _rel(config_path)
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
            if adr.status == "Proposed" and adr.decisions and all(
                same(current.get(d.name, MISSING), MISSING if d.new == REMOVED else d.new) for d in adr.decisions
            ):
                errors.append(
                    f"{_rel(adr.path)}:{adr.status_line}: ADR {adr.label} is Proposed but config.py already has "
                    "all its values: mark it Accepted (or Rejected, and restore the values)"
                )

    if index:
        readme = decisions_dir / "README.md"
        try:
            text = readme.read_text(encoding="utf-8") if readme.exists() else None
        except (OSError, UnicodeDecodeError):
            text = None
        if text is None or render_readme(text, adrs) != text:
            errors.append(f"{_rel(readme)}: index is stale: run make decisions")
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
    rows = ["| ADR | Title | Status | Date | Constants |", "| --- | --- | --- | --- | --- |"]
    for adr in adrs:
        names = ", ".join(f"`{d.name}`" for d in adr.decisions) or "—"
        title = (adr.title or "?").replace("|", "\\|")
        status = (adr.status_text or "?").replace("|", "\\|")
        rows.append(f"| [{adr.label}]({adr.path.name}) | {title} | {status} | {adr.date or '?'} | {names} |")
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
# scaffolding

DEFAULT_TEMPLATE = """# NNNN: Title

Date: YYYY-MM-DD

## Status

Proposed

## Context

What is the problem, what did we observe (numbers, runs), what forces are at play?

## Decision

What we do. One line per constant of config.py this ADR changes:

<!-- decision-lines -->

## Alternatives Considered

## Consequences

**Positive:**

**Negative:**

**Risks:**

**Mitigation:**

**Success metrics:**
"""


NO_CHANGES_HINT = (
    "<!-- config.py does not differ from the decisions yet: add one line per constant you will change, "
    "e.g. - NAME: old → new (reason) -->"
)


def slugify(title: str, max_len: int = 60) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    if len(slug) > max_len:
        cut = slug[:max_len]
        slug = cut.rsplit("-", 1)[0] if "-" in cut else cut
    return slug.strip("-")


def decision_lines(changes: dict) -> list[str]:
    """``- NAME: old → new`` lines for a ``diff()`` result."""
    out = []
    for name, (decided, current) in changes.items():
        old = NEW if decided is MISSING else fmt(decided)
        new = REMOVED if current is MISSING else fmt(current)
        out.append(f"- {name}: {old} → {new}")
    return out


def _set_status(path: Path, status: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    in_status = False
    for i, line in enumerate(lines):
        sm = SECTION_RE.match(line.strip())
        if sm and not line.strip().startswith("###"):
            in_status = sm.group(1).lower() == "status"
            continue
        if in_status and line.strip():
            lines[i] = status + ("\n" if line.endswith("\n") else "")
            break
    else:
        raise ValueError(f"{_rel(path)} has no `## Status` section")
    path.write_text("".join(lines), encoding="utf-8")


def _fill_template(template: str, number: int, title: str, date: str, lines: list[str], supersedes) -> str:
    out, section, status_done, decision_done, date_done = [], None, False, False, False
    src = template.splitlines()
    title_done = False
    for raw in src:
        line = raw.strip()
        if not title_done and line.startswith("# "):
            out.append(f"# {number:04d}: {title}")
            title_done = True
            continue
        sm = SECTION_RE.match(line)
        if sm and not line.startswith("###"):
            if section == "decision" and not decision_done:
                out.extend((lines + [""]) if lines else [])
                decision_done = True
            section = sm.group(1).lower()
            out.append(raw)
            continue
        if section is None and line.startswith("Date:") and not date_done:
            out.append(f"Date: {date}")
            date_done = True
            continue
        if section == "status":
            if line and not status_done:
                out.append("Proposed")
                if supersedes is not None:
                    out.append("")
                    out.append(f"Supersedes ADR {supersedes:04d}.")
                status_done = True
            elif line and status_done:
                pass  # drop other template status text
            else:
                out.append(raw)
            continue
        if section == "decision" and line == "<!-- decision-lines -->":
            if not decision_done:
                out.extend(lines or [NO_CHANGES_HINT])
                decision_done = True
            continue
        out.append(raw)
    if not title_done:
        out.insert(0, f"# {number:04d}: {title}")
    if not date_done:
        out.insert(1, "")
        out.insert(2, f"Date: {date}")
    if section == "decision" and not decision_done and lines:
        out.extend([""] + lines)
    return "\n".join(out).rstrip("\n") + "\n"


def new_adr(
    title: str,
    *,
    config_path=DEFAULT_CONFIG,
    decisions_dir=DEFAULT_DIR,
    supersedes: int | None = None,
    date: str | None = None,
) -> Path:
    """Write the next numbered ADR (status Proposed), pre-filled with config.py's differences from the decisions."""
    decisions_dir = Path(decisions_dir)
    slug = slugify(title)
    if not slug:
        raise ValueError(f"title {title!r} gives an empty file name; use letters or digits")
    date = date or _dt.date.today().isoformat()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
        raise ValueError(f"date must be YYYY-MM-DD, got {date!r}")
    _dt.date.fromisoformat(date)
    decisions_dir.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in _md_files(decisions_dir) if (m := FILENAME_RE.match(p.name))]
    number = max(numbers, default=0) + 1
    old_path = None
    if supersedes is not None:
        matches = [p for p in _md_files(decisions_dir) if (m := FILENAME_RE.match(p.name)) and int(m.group(1)) == supersedes]
        if not matches:
            raise ValueError(f"--supersedes {supersedes}: there is no ADR {supersedes:04d}")
        old_path = matches[0]
    template_path = decisions_dir / "template.md"
    template = template_path.read_text(encoding="utf-8") if template_path.exists() else DEFAULT_TEMPLATE
    changes = diff(config_path, decisions_dir) if Path(config_path).exists() else {}
    text = _fill_template(template, number, title.strip(), date, decision_lines(changes), supersedes)
    path = decisions_dir / f"{number:04d}-{slug}.md"
    if path.exists():
        raise ValueError(f"{_rel(path)} already exists")
    path.write_text(text, encoding="utf-8")
    if old_path is not None:
        _set_status(old_path, f"Superseded by {number:04d}")
    return path


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
    parser = argparse.ArgumentParser(prog="python -m ddpm.decisions", description=__doc__.split("\n\n")[0])
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
    p = sub.add_parser("diff", help="print `- NAME: decided → config.py` lines where config.py differs")
    common(p)
    args = parser.parse_args(argv)

    if args.verb == "index":
        changed = update_index(args.dir)
        print(f"{_rel(Path(args.dir) / 'README.md')}: index {'updated' if changed else 'up to date'}")
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
                args.title, config_path=args.config, decisions_dir=args.dir, supersedes=args.supersedes, date=args.date
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(_rel(path))
        return 0
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
