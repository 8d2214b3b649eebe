"""The ADR format: parsing records and config.py.

An Architecture Decision Record ``decisions/NNNN-kebab-title.md`` has a title line ``# NNNN: Title``, a
``Date: YYYY-MM-DD`` line, and the sections Status, Context, Decision, Alternatives Considered and Consequences.
Its ``## Decision`` section states one machine-readable line per constant of config.py it changes::

    - LEARNING_RATE: 5e-6 → 5e-5 (10x for plateau breaking)
    - CHANNEL_MULTS: (new) → (1, 2, 2)
    - OLD_KNOB: 3 → (removed)

This module turns such files into ``ADR`` records (``parse_adr``, ``load_adrs``), reads config.py's top-level
UPPER_CASE literals (``read_config``), and compares and prints values the way the records write them (``same``,
``fmt``, ``decision_lines``). What the records mean together (replay, check, index) is ``ddpm.decisions.check``.

config.py is read with ``ast`` only: it is never imported or executed here.
"""

from __future__ import annotations

import ast
import datetime as _dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

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
    finding: str = ""  # the first paragraph of an optional `## Finding` section, as one line: for the index
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
# values and decision lines


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


def decision_lines(changes: dict) -> list[str]:
    """``- NAME: old → new`` lines for a ``diff()`` result."""
    out = []
    for name, (decided, current) in changes.items():
        old = NEW if decided is MISSING else fmt(decided)
        new = REMOVED if current is MISSING else fmt(current)
        out.append(f"- {name}: {old} → {new}")
    return out


# --------------------------------------------------------------------------------------------------------------
# reading config.py and ADR files


def rel_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (for messages), else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def parse_adr(path) -> ADR:
    path = Path(path)
    m = FILENAME_RE.match(path.name)
    adr = ADR(path=path, number=int(m.group(1)) if m else None)
    where = rel_path(path)
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
    in_comment = in_fence = finding_ended = False
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
        elif section == "finding" and not finding_ended:  # its first paragraph, wrapped lines joined
            if line:
                adr.finding = f"{adr.finding} {line}".strip()
            finding_ended = bool(adr.finding) and not line
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
            adr.errors.append(f"{where}:{d.line}: {d.name} is decided twice in this ADR (also line {seen[d.name]})")
        seen[d.name] = d.line
    return adr


def md_files(decisions_dir) -> list[Path]:
    """The Markdown files of the decisions folder that may be ADRs (not README.md, template.md), by name."""
    d = Path(decisions_dir)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix == ".md" and p.name not in IGNORED_FILES)


def load_adrs(decisions_dir) -> tuple[list[ADR], list[str]]:
    """All well-named ADRs, sorted by number (then file name), and the errors about file names."""
    adrs, errors = [], []
    for p in md_files(decisions_dir):
        if not FILENAME_RE.match(p.name):
            errors.append(
                f"{rel_path(p)}:1: file name does not match NNNN-kebab-title.md (4 digits, lower-case words joined "
                "by '-'); it is ignored"
            )
            continue
        adrs.append(parse_adr(p))
    adrs.sort(key=lambda a: (a.number, a.path.name))
    return adrs, errors
