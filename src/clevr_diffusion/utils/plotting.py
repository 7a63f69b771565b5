"""Dependency-free plots (PIL only): training curves, benchmark lines and bars."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from .images import save_png

__all__ = ["plot_bars", "plot_curve", "plot_lines"]

# Series colours: the Okabe-Ito palette (colour-blind friendly) first, then five more.
PALETTE = (
    (0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (230, 159, 0), (0, 0, 0),
    (128, 128, 128), (120, 60, 20), (150, 40, 200), (90, 140, 0), (190, 0, 60),
)


def _smooth(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_curve(
    steps: Sequence[int],
    values: Sequence[float],
    path: str | os.PathLike[str],
    title: str = "training loss",
    log_y: bool = True,
    size: tuple[int, int] = (640, 400),
) -> Path:
    """Draw ``values`` against ``steps`` (raw in light grey, a moving average in blue) as a PNG.

    Args:
        steps: X values (training steps), increasing.
        values: Y values (e.g. loss), positive when ``log_y``.
        path: Destination PNG (written atomically).
        title: Text at the top.
        log_y: Logarithmic y axis (diffusion losses span decades early on).
        size: Image (width, height) in pixels.
    """
    width, height = size
    left, right, top, bottom = 64, 16, 28, 36
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((left, 8), title, fill="black")
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    if len(steps) >= 1:
        ys = [math.log10(max(v, 1e-12)) if log_y else v for v in values]
        x0, x1 = steps[0], max(steps[-1], steps[0] + 1)
        y0, y1 = min(ys), max(ys)
        if y1 - y0 < 1e-9:
            y0, y1 = y0 - 0.5, y1 + 0.5

        def to_px(x: float, y: float) -> tuple[float, float]:
            px = left + (x - x0) / (x1 - x0) * (width - left - right)
            py = height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)
            return px, py

        window = max(1, len(ys) // 50)
        for series, colour in ((ys, (200, 200, 200)), (_smooth(ys, window), (31, 119, 180))):
            points = [to_px(x, y) for x, y in zip(steps, series, strict=True)]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            else:
                draw.ellipse([points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2], fill=colour)
        for frac in (0.0, 0.5, 1.0):
            y = y0 + frac * (y1 - y0)
            _, py = to_px(x0, y)
            label = f"{10 ** y:.3g}" if log_y else f"{y:.3g}"
            draw.text((4, py - 6), label, fill="black")
        draw.text((left, height - bottom + 6), str(steps[0]), fill="black")
        draw.text((width - right - 60, height - bottom + 6), f"step {steps[-1]}", fill="black")
    return save_png(image, path)


def _frame(size: tuple[int, int], title: str, margins: tuple[int, int, int, int]) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = margins
    draw.text((left, 8), title, fill="black")
    draw.rectangle([left, top, size[0] - right, size[1] - bottom], outline="black")
    return image, draw


def plot_lines(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike[str],
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    log_x: bool = False,
    y_range: tuple[float, float] | None = None,
    size: tuple[int, int] = (720, 440),
    errors: dict[str, Sequence[float]] | None = None,
    x_ticks: bool = True,
) -> Path:
    """Draw several named series ``name -> (xs, ys)`` as lines with dots and a legend, as a PNG.

    Args:
        series: Up to 12 series (colours repeat after that); each xs and ys of equal length.
        path: Destination PNG (written atomically).
        title: Text at the top.
        x_label: Text under the x axis.
        y_label: Text beside the top of the y axis.
        log_x: Logarithmic x axis (e.g. sampling steps 10 ... 1000).
        y_range: Fixed (low, high) of the y axis (default: the data's range).
        size: Image (width, height) in pixels; the legend widens it for long names.
        errors: Per series, a half-width for each point, drawn as a vertical bar (e.g. one
            standard deviation).
        x_ticks: Label the x axis at every x value of the data; ``False``: at five even
            positions (for x values that differ between series, such as times).
    """
    errors = errors or {}
    legend = max((len(name) for name in series), default=0) * 6 + 50
    right = max(170, legend)
    width, height = size[0] + right - 170, size[1]
    margins = left, right, top, bottom = 64, right, 28, 40
    image, draw = _frame((width, height), title, margins)
    xs_all = [math.log10(x) if log_x else x for xs, _ in series.values() for x in xs]
    ys_all = [y for _, ys in series.values() for y in ys]
    ys_all += [y + sign * e for name, (_, ys) in series.items() for y, e in zip(ys, errors.get(name, ()), strict=False) for sign in (-1, 1)]
    if xs_all:
        x0, x1 = min(xs_all), max(xs_all)
        x1 = x1 if x1 > x0 else x0 + 1
        y0, y1 = y_range if y_range is not None else (min(ys_all), max(ys_all))
        if y1 - y0 < 1e-9:
            y0, y1 = y0 - 0.5, y1 + 0.5

        def to_px(x: float, y: float) -> tuple[float, float]:
            x = math.log10(x) if log_x else x
            px = left + (x - x0) / (x1 - x0) * (width - left - right)
            py = height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)
            return px, py

        ticks = sorted({x for xs, _ in series.values() for x in xs})
        if not x_ticks:
            low, high = (10**x0, 10**x1) if log_x else (x0, x1)
            ticks = [low + (high - low) * k / 4 for k in range(5)]
        for x in ticks:
            px, _ = to_px(x, y0)
            draw.text((px - 8, height - bottom + 4), f"{x:g}" if x_ticks else f"{x:.3g}", fill="black")
        for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
            y = y0 + frac * (y1 - y0)
            _, py = to_px(ticks[0], y)
            draw.line([left, py, width - right, py], fill=(230, 230, 230))
            draw.text((4, py - 6), f"{y:.3g}", fill="black")
        for i, (name, (xs, ys)) in enumerate(series.items()):
            colour = PALETTE[i % len(PALETTE)]
            points = [to_px(x, y) for x, y in zip(xs, ys, strict=True)]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            for px, py in points:
                draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
            for x, y, e in zip(xs, ys, errors.get(name, ()), strict=False):
                (px, low), (_, high) = to_px(x, y - e), to_px(x, y + e)
                draw.line([px, low, px, high], fill=colour, width=1)
                draw.line([px - 3, low, px + 3, low], fill=colour)
                draw.line([px - 3, high, px + 3, high], fill=colour)
            ly = top + 8 + 16 * i
            draw.line([width - right + 10, ly + 6, width - right + 30, ly + 6], fill=colour, width=3)
            draw.text((width - right + 36, ly), name, fill="black")
    draw.text((left + (width - left - right) // 2 - 3 * len(x_label), height - bottom + 20), x_label, fill="black")
    draw.text((left + 4, top + 2), y_label, fill="black")
    return save_png(image, path)


def plot_bars(
    values: dict[str, float],
    path: str | os.PathLike[str],
    title: str = "",
    unit: str = "",
    size: tuple[int, int] = (720, 0),
) -> Path:
    """Draw ``name -> value`` as horizontal bars, each labelled with its value, as a PNG.

    Args:
        values: Non-negative values in display order (top first).
        path: Destination PNG (written atomically).
        title: Text at the top.
        unit: Appended to each value's label (e.g. ``"img/s"``).
        size: Image width; height 0 means 26 px per bar plus margins.
    """
    width = size[0]
    height = size[1] or 60 + 26 * len(values)
    margins = left, right, top, bottom = 170, 110, 28, 16
    image, draw = _frame((width, height), title, margins)
    top_value = max(values.values(), default=1.0) or 1.0
    for i, (name, value) in enumerate(values.items()):
        y = top + 8 + 26 * i
        length = (width - left - right) * max(value, 0.0) / top_value
        draw.rectangle([left + 1, y, left + 1 + length, y + 16], fill=PALETTE[i % len(PALETTE)])
        draw.text((8, y + 2), name[:26], fill="black")
        draw.text((left + length + 6, y + 2), f"{value:.3g} {unit}".strip(), fill="black")
    return save_png(image, path)
