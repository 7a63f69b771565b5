"""Copy an ablation study's plots and grids into docs/images and print its tables for the docs.

    python docs/scripts/ablation_figures.py STUDY_FOLDER PREFIX

writes ``docs/images/PREFIX_accuracy.png``, ``PREFIX_accuracy_time.png`` and, for the best and
the baseline variant, ``PREFIX_grid_NAME.png`` (test.json at the last point), and prints
markdown: the table of ``summary.md`` and a table of per-variant differences from the
baseline at each point (in accuracy points, with the draws' spread), which the Ablations page
quotes. Every figure on that page comes from here.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import sys
from pathlib import Path

from clevr_diffusion.ablation.plan import BASELINE, AblationPlan, variant_folder
from clevr_diffusion.ablation.report import REPORT_FILES, AblationReport

DOCS_IMAGES = Path(__file__).resolve().parents[1] / "images"


def main(study: Path, prefix: str) -> None:
    report = AblationReport.read(study)
    plan = AblationPlan.load(study / "plan.json")
    for kind in ("accuracy", "accuracy_time"):
        shutil.copyfile(study / REPORT_FILES[kind], DOCS_IMAGES / f"{prefix}_{kind}.png")
    best = report.best()
    for variant in {BASELINE, best.name if best else BASELINE}:
        grids = sorted((study / "variants" / variant_folder(variant) / "grids").glob("test_*.png"))
        if grids:
            shutil.copyfile(grids[-1], DOCS_IMAGES / f"{prefix}_grid_{variant_folder(variant)}.png")
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


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
