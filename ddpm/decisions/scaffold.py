"""Scaffolding for the next ADR: ``new_adr`` numbers it, fills decisions/template.md (or a built-in one) with
config.py's undecided changes as decision lines, and marks a superseded ADR as such.

From a sweep or ladder (``from_results``: runs/<name>/results.json, written by ddpm/experiments/), the decision
lines are instead the best point's values, ``- NAME: config.py's value → best``, and the Context holds the
results table and the command that produced it. Only results.json is read: this room imports no torch.

Used by ``python -m ddpm.decisions.check new`` (``make adr TITLE="..." [FROM=runs/<sweep>]``).
"""

from __future__ import annotations

import ast
import datetime as _dt
import json
import re
from pathlib import Path

from ddpm.decisions.adr import FILENAME_RE, MISSING, NEW, SECTION_RE, decision_lines, fmt, md_files, rel_path, same
from ddpm.decisions.config_file import read_config
from ddpm.decisions.replay import DEFAULT_CONFIG, DEFAULT_DIR, diff

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
        raise ValueError(f"{rel_path(path)} has no `## Status` section")
    path.write_text("".join(lines), encoding="utf-8")


def from_results(folder, config_path) -> tuple[list[str], list[str]]:
    """(decision lines, Context lines) from ``folder``/results.json (or that file): the best point against config.py."""
    path = Path(folder) / "results.json" if Path(folder).is_dir() else Path(folder)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(
            f"FROM={folder}: no results.json there; run make sweep SPEC=... (or make ladder) first"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{rel_path(path)}: not readable ({err}); run the sweep again to rewrite it") from None
    best = data.get("best") if isinstance(data, dict) else None
    if not isinstance(best, dict) or not isinstance(best.get("set"), dict):
        raise ValueError(f"{rel_path(path)}: no best point (did every trial fail? see results.md)")
    current = read_config(config_path) if Path(config_path).exists() else {}
    lines, kept = [], []
    for name, literal in best["set"].items():
        try:
            value, old = ast.literal_eval(literal), current.get(name, MISSING)
        except (ValueError, SyntaxError):
            raise ValueError(f"{rel_path(path)}: best value {name} = {literal!r} is not a Python literal") from None
        if same(old, value):
            kept.append(f"{name} = {literal}")
        else:
            lines.append(f"- {name}: {NEW if old is MISSING else fmt(old)} → {fmt(value)}")
    metric = best.get("metric") or {}
    base = ", ".join(f"{k} = {fmt(v)}" for k, v in (data.get("base") or {}).items())
    budget = data.get("budget_text") or f"{data.get('budget')} optimizer steps each"  # results.json before budget_tflop
    metric_name = data.get("metric")
    if metric.get("n"):  # results.aggregate gives a mean wherever a seed has a value
        why_best = f"{metric_name} mean {metric['mean']:.4g} over {_count(metric['n'], 'seed')}"
    else:  # results.aggregate ranks points without a value by their final probe accuracy
        reason = " (none reached the target)" if metric_name == "steps_to_target" else ""
        why_best = f"though no seed of any point has a {metric_name}{reason}, so it ranks first by its seeds' final probe accuracy"
    context = [
        f"Evidence: the {data.get('kind', 'sweep')} `{data.get('name')}` ({rel_path(path)}), produced by",
        "",
        "```",
        str(data.get("command")),
        "```",
        "",
        f"{_count(len(data.get('points', [])), 'point')} × {_count(len(data.get('seeds', [])), 'seed')}, {budget}, ranked by "
        f"{metric_name} ({data.get('direction')}); mean (min / median / max) over seeds"
        + (f"; every trial also set {base}" if base else "")
        + f". Best: {best.get('trial')}, "
        + why_best
        + (f"; it keeps {', '.join(kept)} as config.py has it." if kept else "."),
        "",
        *str(data.get("table", "")).splitlines(),
        "",
    ]
    verdicts = [f"Verdict on {k}: {v}." for k, v in (data.get("verdicts") or {}).items()]
    return lines, context + (verdicts + [""] if verdicts else [])  # a blank line before the next heading


def _count(n: int, noun: str) -> str:
    """1 point, 3 points."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _fill_template(
    template: str, number: int, title: str, date: str, lines: list[str], supersedes, context: list[str] | None = None
) -> str:
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
            if section == "context" and context is not None:
                out.extend(["", *context])
            section = sm.group(1).lower()
            out.append(raw)
            continue
        if section == "context" and context is not None:
            continue  # the template's prompt gives way to the evidence
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
    results=None,
) -> Path:
    """Write the next numbered ADR (status Proposed), pre-filled with config.py's differences from the decisions,
    or with the best point of ``results`` (a sweep's folder: ``from_results``)."""
    decisions_dir = Path(decisions_dir)
    if any(not c.isprintable() for c in title):
        raise ValueError(f"TITLE={title!r}: one line of text, without newlines or control characters")
    slug = slugify(title)
    if not slug:
        raise ValueError(f"title {title!r} gives an empty file name; use letters or digits")
    date = date or _dt.date.today().isoformat()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
        raise ValueError(f"date must be YYYY-MM-DD, got {date!r}")
    _dt.date.fromisoformat(date)
    decisions_dir.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in md_files(decisions_dir) if (m := FILENAME_RE.match(p.name))]
    number = max(numbers, default=0) + 1
    old_path = None
    if supersedes is not None:
        matches = [
            p for p in md_files(decisions_dir) if (m := FILENAME_RE.match(p.name)) and int(m.group(1)) == supersedes
        ]
        if not matches:
            raise ValueError(f"--supersedes {supersedes}: there is no ADR {supersedes:04d}")
        old_path = matches[0]
    template_path = decisions_dir / "template.md"
    template = template_path.read_text(encoding="utf-8") if template_path.exists() else DEFAULT_TEMPLATE
    if results is not None:
        lines, context = from_results(results, config_path)
    else:
        lines, context = decision_lines(diff(config_path, decisions_dir) if Path(config_path).exists() else {}), None
    text = _fill_template(template, number, title.strip(), date, lines, supersedes, context)
    path = decisions_dir / f"{number:04d}-{slug}.md"
    if path.exists():
        raise ValueError(f"{rel_path(path)} already exists")
    path.write_text(text, encoding="utf-8")
    if old_path is not None:
        _set_status(old_path, f"Superseded by {number:04d}")
    return path
