"""The evaluation's report: ``samples.png`` (a row of samples per prompt), ``sweep.png`` (accuracy and diversity
against the guidance scale, drawn with PIL), ``sweep.md`` (the same as a Markdown table) and ``eval.json``, each
written atomically (a temporary file in the target's folder, then ``os.replace``), and the run's summary merged
into its ``run.json``.

``write_outputs`` takes the results dict of ``ddpm.evaluate.evaluate``; nothing here computes a metric.
"""

import json
import math
import os
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ddpm.files import atomic_write, write_json, write_text


# ---- numbers and tables -------------------------------------------------------------------------------
def fmt_number(v) -> str:
    """A metric for people: None → "nan", floats below 1 with 3 decimals, others with 4 significant digits."""
    if v is None:
        return "nan"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) >= 1 else f"{v:.3f}"
    return str(v)


def sweep_table(rows: Sequence[dict]) -> str:
    lines = ["| guidance | joint acc. (seen) | joint acc. (held-out) | diversity | FD |", "|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['guidance_scale']:g} | {r['seen']['joint']:.3f} | {r['heldout']['joint']:.3f} | "
            f"{fmt_number(r['diversity'])} | {fmt_number(r['fd'])} |"
        )
    return "\n".join(lines)


# ---- pictures, drawn with PIL -------------------------------------------------------------------------
def load_font(size: int = 11):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the bitmap font
        return ImageFont.load_default()


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def samples_sheet(
    images: torch.Tensor, prompts: Sequence[str], n: int, path: str, *, num_seen: Optional[int] = None, scale: int = 2
) -> None:
    """One row per prompt (its caption on the left), n samples across; a red bar before the held-out rows."""
    h, w = images.shape[-2:]
    cell, gap, label_w, bar = h * scale, 2, 280, 6
    rows = len(prompts)
    extra = bar if num_seen is not None and 0 < num_seen < rows else 0
    sheet = Image.new("RGB", (label_w + n * (cell + gap) + gap, rows * (cell + gap) + gap + extra), (255, 255, 255))
    draw, font = ImageDraw.Draw(sheet), load_font(11)
    y = gap
    for r, prompt in enumerate(prompts):
        if extra and r == num_seen:
            draw.rectangle([0, y, sheet.width, y + bar - 2], fill=(200, 40, 40))
            y += bar
        draw.text(
            (4, y + cell // 2 - 6),
            prompt + (" *" if num_seen is not None and r >= num_seen else ""),
            fill=(0, 0, 0),
            font=font,
        )
        for c in range(n):
            tile = Image.fromarray(_to_uint8(images[r * n + c])).resize((cell, cell), Image.NEAREST)
            sheet.paste(tile, (label_w + gap + c * (cell + gap), y))
        y += cell + gap
    save_png(sheet, path)


def _nice_ticks(lo: float, hi: float, k: int = 5) -> list:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / k
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 10))
        t += step
    return ticks


def plot_panel(draw, box, xs, series, *, title, ylabel, y_range=None, font=None, xlabel="guidance scale", x_scale=None):
    """Axes, ticks, grid, lines with points and a legend inside box = (x0, y0, x1, y1).

    ``x_scale`` maps an x to its position on the axis (``math.log10`` for a log axis); ticks still read x.
    """
    x_scale = x_scale or (lambda x: x)
    x0, y0, x1, y1 = box
    left, right, top, bottom = x0 + 52, x1 - 12, y0 + 44, y1 - 40
    draw.text((x0 + (x1 - x0) // 2 - 4 * len(title), y0 + 6), title, fill=(0, 0, 0), font=font)
    values = [v for _, _, ys in series for v in ys if v is not None]
    lo, hi = y_range if y_range else (min(values, default=0.0), max(values, default=1.0))
    if not y_range:
        pad = (hi - lo) * 0.1 or max(abs(hi) * 0.1, 0.1)
        lo, hi = max(0.0, lo - pad), hi + pad
    yt = _nice_ticks(lo, hi)
    lo, hi = min(lo, yt[0]), max(hi, yt[-1])
    xlo, xhi = min(map(x_scale, xs)), max(map(x_scale, xs))
    if xhi == xlo:
        xlo, xhi = xlo - 1, xhi + 1
    xpad = (xhi - xlo) * 0.06
    xlo, xhi = xlo - xpad, xhi + xpad

    def px(x):
        return left + (x_scale(x) - xlo) / (xhi - xlo) * (right - left)

    def py(y):
        return bottom - (y - lo) / (hi - lo) * (bottom - top)

    for t in yt:
        draw.line([left, py(t), right, py(t)], fill=(225, 225, 225))
        draw.text((left - 46, py(t) - 6), f"{t:.3g}", fill=(60, 60, 60), font=font)
    for x in xs:
        draw.line([px(x), bottom, px(x), bottom + 4], fill=(0, 0, 0))
        draw.text((px(x) - 6, bottom + 6), f"{x:g}", fill=(60, 60, 60), font=font)
    draw.line([left, top, left, bottom], fill=(0, 0, 0), width=1)
    draw.line([left, bottom, right, bottom], fill=(0, 0, 0), width=1)
    draw.text(((left + right) // 2 - 40, bottom + 22), xlabel, fill=(0, 0, 0), font=font)
    draw.text((x0 + 4, y0 + 6), ylabel, fill=(0, 0, 0), font=font)
    for i, (name, color, ys) in enumerate(series):
        pts = [(px(x), py(y)) for x, y in zip(xs, ys) if y is not None]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=2)
        for x, y in pts:
            draw.ellipse([x - 3.5, y - 3.5, x + 3.5, y + 3.5], fill=color, outline=(0, 0, 0))
        lx = left + 10 + 110 * i  # legend: one row above the plot area
        draw.line([lx, y0 + 30, lx + 18, y0 + 30], fill=color, width=2)
        draw.ellipse([lx + 5.5, y0 + 26.5, lx + 12.5, y0 + 33.5], fill=color, outline=(0, 0, 0))
        draw.text((lx + 24, y0 + 24), name, fill=(0, 0, 0), font=font)


def sweep_plot(rows: Sequence[dict], path: str) -> None:
    """Two panels drawn with PIL: joint accuracy (seen, held-out) and diversity against the guidance scale."""
    rows = sorted(rows, key=lambda r: r["guidance_scale"])
    xs = [r["guidance_scale"] for r in rows]
    img = Image.new("RGB", (900, 340), (255, 255, 255))
    draw, font = ImageDraw.Draw(img), load_font(11)
    if not rows:
        draw.text((20, 20), "no guidance sweep was run (--sweep)", fill=(0, 0, 0), font=font)
    else:
        plot_panel(
            draw,
            (0, 0, 450, 340),
            xs,
            [
                ("seen", (31, 119, 180), [r["seen"]["joint"] for r in rows]),
                ("held-out", (214, 39, 40), [r["heldout"]["joint"] for r in rows]),
            ],
            title="joint accuracy",
            ylabel="accuracy",
            y_range=(0.0, 1.0),
            font=font,
        )
        plot_panel(
            draw,
            (450, 0, 900, 340),
            xs,
            [("diversity", (44, 160, 44), [r["diversity"] for r in rows])],
            title="diversity (probe features)",
            ylabel="mean pairwise L2",
            font=font,
        )
    save_png(img, path)


def save_png(img: Image.Image, path: str) -> None:
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def json_safe(obj):
    """JSON-safe copy: NaN/inf → None, tensors → lists, private ``_`` keys dropped."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return json_safe(obj.item())
    return obj


def write_outputs(results: dict, out_dir: str, *, extra: Optional[dict] = None) -> dict:
    """eval.json, samples.png, sweep.png and sweep.md in out_dir; returns the paths."""
    s = results["settings"]
    paths = {name: os.path.join(out_dir, name) for name in ("eval.json", "samples.png", "sweep.png", "sweep.md")}
    samples_sheet(
        results["_images"],
        s["seen_prompts"] + s["heldout_prompts"],
        s["n"],
        paths["samples.png"],
        num_seen=results["_num_seen"],
    )
    sweep_plot(results["sweep"], paths["sweep.png"])
    table = sweep_table(results["sweep"])
    write_text(table + "\n", paths["sweep.md"])
    write_json(json_safe({**(extra or {}), **results, "sweep_table": table}), paths["eval.json"])
    return paths


def update_run_json(path: str, key: str, value) -> bool:
    """Read-modify-write ``path`` (a run.json) with ``data[key] = value``, atomically; False if it does not exist."""
    if not os.path.isfile(path):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise RuntimeError(f"{path}: cannot read it to add {key!r} ({err}); left as it was") from err
    if not isinstance(data, dict):
        raise RuntimeError(f"{path}: not a JSON object; {key!r} not added, left as it was")
    data[key] = value
    write_json(data, path, allow_nan=True)  # keep what others wrote (a NaN loss, say) as it was
    return True
