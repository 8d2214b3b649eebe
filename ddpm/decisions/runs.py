"""List the training runs under runs/, newest first: ``python -m ddpm.decisions.runs [--dir runs]`` (``make runs``).

Each ``runs/<name>/run.json`` is written by train.py::

    {"name", "started" (ISO time), "provenance": <ddpm.provenance.collect()>, "step", "epoch",
     "final_loss", "eval": {...} (optional)}

A fine-tuning run (``train.py --init-from``) has ``provenance.base`` = {"path", "sha256", "run", "step", "adr"};
the OVERRIDES column then starts with ``base <run>@<step>``, so a row reads like the seed's model log:
the base, then what changed.

COMPUTE is the precision the run resolved and the hardware it ran on (``provenance.precision``, ``.hardware``):
the same config trains 11x slower in emulated bf16 than in fp32 (ADR 0035), so a run's speed is read beside them.

A run without a readable run.json is still listed, with "?" and a note. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path

from ddpm.cli import command_line

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO_ROOT / "runs"
COLUMNS = ("RUN", "STARTED", "ADR", "DATA", "OVERRIDES", "COMPUTE", "STEPS", "LOSS", "EVAL")


def _timestamp(started) -> float | None:
    if not isinstance(started, str):
        return None
    try:
        t = _dt.datetime.fromisoformat(started.replace("Z", "+00:00"))
    except ValueError:
        return None
    try:
        return t.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


RUN_FILES = ("run.json", "failed.json", "checkpoints", "samples")  # what train.py or a sweep writes into a run folder


def looks_like_a_run(folder: Path) -> bool:
    """True if ``folder`` holds something a run writes (even one that crashed early): listed, else skipped."""
    return any((folder / f).exists() for f in RUN_FILES) or any(folder.glob("events.out.tfevents.*"))


def load_runs(runs_dir) -> list[dict]:
    """One entry per run directory: {"name", "path", "data" (run.json or None), "note" (str or None)}, newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    out = []
    folders = sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    # A sweep's or ladder's folder (ddpm/experiments/) holds runs of its own: list those, as "<sweep>/<run>".
    folders = [
        c
        for p in folders
        for c in (
            sorted(q for q in p.iterdir() if q.is_dir() and not q.name.startswith("."))
            if (p / "sweep.json").is_file()
            else [p]
        )
    ]
    for d in folders:
        if not looks_like_a_run(d):
            continue  # a folder a run never wrote, such as the datasets `make digits` puts in runs/data
        name = d.name if d.parent == runs_dir else f"{d.parent.name}/{d.name}"
        entry = {"name": name, "path": d, "data": None, "note": None}
        f = d / "run.json"
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            entry["data"] = data
        except FileNotFoundError:
            failed = (d / "failed.json").is_file()
            entry["note"] = (
                "failed in its sweep (see its failed.json)"
                if failed
                else "no run.json (still starting, or crashed before writing it)"
            )
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            entry["note"] = f"unreadable run.json: {exc}"
        out.append(entry)

    def key(entry):
        ts = _timestamp((entry["data"] or {}).get("started"))
        return (ts is not None, ts or 0.0, entry["name"])

    out.sort(key=key, reverse=True)
    return out


def _num(value, spec: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-" if value is None else str(value)
    return format(value, spec)


def _overrides(prov: dict) -> str:
    overrides = prov.get("overrides") or {}
    if isinstance(overrides, dict) and overrides:
        text = ",".join(f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in overrides.items())
    elif prov.get("exploratory"):
        text = "exploratory"
    else:
        text = "-"
    if prov.get("decisions_ok") is False:
        text += " (decisions check failed)"
    return text


def _base(base) -> str:
    if not isinstance(base, dict):
        return ""
    return f"base {base.get('run') or '?'}@{base.get('step') if base.get('step') is not None else '?'} "


def _data(prov: dict, config) -> str:
    """What the run trained on: "shapes", or "folder:digits n=1797 (3 skipped)" from provenance["data"]."""
    info = prov.get("data") if isinstance(prov.get("data"), dict) else {}
    name = info.get("dataset") or (config or {}).get("DATASET") or "shapes"  # older runs: shapes only
    if info.get("data_dir"):
        name += ":" + Path(str(info["data_dir"])).name
    if info.get("size") is not None and name != "shapes":
        name += f" n={info['size']}" + (f" ({info['skipped']} skipped)" if info.get("skipped") else "")
    return name


def _compute(prov: dict) -> str:
    """The precision the run computed in and on what (ADR 0035): "fp32 on AMD EPYC (AVX2), 2 threads"; older runs "-"."""
    precision, hardware = prov.get("precision"), prov.get("hardware")
    return " on ".join(str(p) for p in (precision, hardware) if p) or "-"


def row(entry: dict) -> tuple[str, ...]:
    data = entry["data"]
    if data is None:
        return (entry["name"],) + ("?",) * (len(COLUMNS) - 1)
    prov = data.get("provenance") if isinstance(data.get("provenance"), dict) else {}
    started = data.get("started")
    ts = _timestamp(started)
    date = _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M") if ts is not None else (str(started or "?"))
    adr = prov.get("adr")
    adr_text = f"{adr['number']:04d}" if isinstance(adr, dict) and isinstance(adr.get("number"), int) else "-"
    ev = data.get("eval")
    score = ev.get("joint_accuracy") if isinstance(ev, dict) else None
    return (
        entry["name"],  # the folder's name, which --resume takes
        date,
        adr_text,
        _data(prov, data.get("config")),
        _base(prov.get("base")) + _overrides(prov),
        _compute(prov),
        "?" if data.get("step") is None else str(data.get("step")),
        _num(data.get("final_loss"), ".4f"),
        _num(score, ".3f"),
    )


def format_table(entries: list[dict]) -> str:
    if not entries:
        return "No runs yet: run make train"
    rows = [COLUMNS] + [row(e) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    notes = [f"note: {e['name']}: {e['note']}" for e in entries if e["note"]]
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ddpm.decisions.runs", description="List training runs, newest first."
    )
    parser.add_argument("--dir", default=str(DEFAULT_DIR), help="runs directory (default: %(default)s)")
    args = parser.parse_args(command_line(argv))
    print(format_table(load_runs(args.dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
