"""A dependency-free line plot (PIL only) for training curves."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from .images import save_png

__all__ = ["plot_curve"]


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
