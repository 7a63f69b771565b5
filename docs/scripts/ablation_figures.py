"""Copy an ablation study's plots and grids into docs/images and print its tables for the docs.

    python docs/scripts/ablation_figures.py STUDY_FOLDER PREFIX [--speeds SPEED_JSON]

writes ``docs/images/PREFIX_accuracy.png``, ``PREFIX_accuracy_time.png`` (not with ``--speeds``) and, for the best and
the baseline variant, ``PREFIX_grid_NAME.png`` (test.json at the last point all variants reached), and prints
markdown: the table of ``summary.md`` and a table of per-variant differences from the
baseline at each point (in accuracy points, with the draws' spread), which the Ablations page
quotes. Every figure on that page comes from here.

``--speeds`` takes the ``--json`` output of ``benchmarks/ablation_speed.py`` (every variant's
training step timed side by side on an idle machine). The study's own timings come from runs
hours apart on a shared machine; these do not, so with them the script also draws
``PREFIX_accuracy_idle_time.png`` (accuracy against minutes of training at the idle speed) and
prints accuracy per second: each variant's accuracy after the longest time all curves reach,
read off its curve.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
from pathlib import Path

from clevr_diffusion.ablation.plan import BASELINE, AblationPlan, variant_folder
from clevr_diffusion.ablation.report import REPORT_FILES, AblationReport
from clevr_diffusion.utils.plotting import plot_lines

DOCS_IMAGES = Path(__file__).resolve().parents[1] / "images"


def main(study: Path, prefix: str, speeds: Path | None = None) -> None:
    report = AblationReport.read(study)
    plan = AblationPlan.load(study / "plan.json")
    # With idle speeds, PREFIX_accuracy_idle_time.png replaces the study's own timings.
    for kind in ("accuracy",) if speeds is not None else ("accuracy", "accuracy_time"):
        shutil.copyfile(study / REPORT_FILES[kind], DOCS_IMAGES / f"{prefix}_{kind}.png")
    best = report.best()
    # The last point every variant has reached, so that the two grids compare.
    common = min((max(v.images) for v in report.variants if v.images), default=None)
    for variant in {BASELINE, best.name if best else BASELINE}:
        grid = study / "variants" / variant_folder(variant) / "grids" / f"test_{common:08d}.png"
        if common is not None and grid.is_file():
            shutil.copyfile(grid, DOCS_IMAGES / f"{prefix}_grid_{variant_folder(variant)}.png")
    print(report.markdown())

    # Differences from the baseline, draw by draw (the same seeds), so the spread is that of the
    # difference, not of each score.
    results = json.loads((study / "results.json").read_text(encoding="utf-8"))["points"]
    by_key = {(r["variant"], r["images"]): r for r in results}

    def per_draw(row: dict) -> list[float]:
        files = list(row["accuracy"].values())
        return [sum(values) / len(values) for values in zip(*files, strict=True)]

    points = sorted({r["images"] for r in results})
    print("| variant | " + " | ".join(f"{p:,} images" for p in points) + " |")
    print("|" + " --- |" * (len(points) + 1))
    for name in plan.variants:
        if name == BASELINE:
            continue
        cells = []
        for p in points:
            if (name, p) not in by_key or (BASELINE, p) not in by_key:
                cells.append("-")
                continue
            diffs = [a - b for a, b in zip(per_draw(by_key[name, p]), per_draw(by_key[BASELINE, p]), strict=True)]
            spread = statistics.stdev(diffs) if len(diffs) > 1 else math.nan
            cells.append(f"{100 * statistics.fmean(diffs):+.1f} ± {100 * spread:.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if speeds is not None:
        per_second(report, json.loads(speeds.read_text(encoding="utf-8")), prefix)


def interpolate(xs: list[float], ys: list[float], x: float) -> float | None:
    """``ys`` read off the piecewise-linear curve through ``(xs, ys)`` at ``x``; None outside it."""
    for (x0, y0), (x1, y1) in zip(zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True), strict=False):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[0] if xs and math.isclose(x, xs[0]) else None


def per_second(report: AblationReport, speeds: dict[str, dict], prefix: str) -> None:
    """Plot accuracy against idle training minutes and print every variant's accuracy at one time."""
    reached = [v for v in report.variants if v.images and v.name in speeds]
    minutes = {v.name: [n / speeds[v.name]["images_per_s"] / 60 for n in v.images] for v in reached}
    title = f"label accuracy (mean of {' and '.join(report.files)}, ± std over {report.draws} draws)"
    plot_lines(
        {v.name: (minutes[v.name], v.accuracy) for v in reached},
        DOCS_IMAGES / f"{prefix}_accuracy_idle_time.png",
        title=title,
        x_label="minutes of training at the idle speed",
        errors={v.name: v.spread for v in reached},
        x_ticks=False,
    )
    # The longest time every curve reaches: the fastest variant's whole budget.
    budget = min(m[-1] for m in minutes.values())
    base_speed = speeds[BASELINE]["images_per_s"]
    print(f"\nAccuracy after {budget:.1f} minutes of training at the idle speed:\n")
    print("| variant | images/s (idle) | vs baseline | images in that time | accuracy |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for v in reached:
        speed = speeds[v.name]["images_per_s"]
        # A curve that starts after the budget, or ends before it, has no value there.
        at = interpolate(minutes[v.name], v.accuracy, budget)
        cell = "-" if at is None else f"{at:.3f}"
        print(f"| {v.name} | {speed:.1f} | {speed / base_speed:.2f} | {budget * 60 * speed:,.0f} | {cell} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="the study's output folder")
    parser.add_argument("prefix", help="file name prefix in docs/images")
    parser.add_argument("--speeds", type=Path, default=None, help="benchmarks/ablation_speed.py --json output")
    args = parser.parse_args()
    main(args.study, args.prefix, args.speeds)
