"""An ablation's report: a table (markdown and JSON) and plots of accuracy against training."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..utils.io import atomic_write_json, atomic_write_text
from ..utils.plotting import plot_lines

if TYPE_CHECKING:
    from ..training.recipe import Recipe
    from .plan import AblationPlan
    from .runner import PointResult

__all__ = ["REPORT_FILES", "AblationReport", "VariantSummary", "write_report"]

REPORT_FILES = {
    "markdown": "summary.md",
    "json": "summary.json",
    "accuracy": "accuracy.png",
    "accuracy_time": "accuracy_time.png",
}
"""The report's files in the study's folder, by kind."""


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class VariantSummary:
    """One variant's curve: its scores at each point reached so far.

    Attributes:
        name: The variant's name.
        changes: Its changes of the base recipe (dotted keys).
        parameters: Trainable parameters of its network.
        images: Training images seen at each scored point.
        train_minutes: Minutes of training steps at each point.
        accuracy: Mean over draws of the label accuracy averaged over the files, per point.
        spread: Standard deviation of that over the draws, per point.
        per_file: File name to (mean, std) over draws at each point.
        images_per_s: Training images per second over the whole run so far.
    """

    name: str
    changes: dict[str, Any]
    parameters: int | None = None
    images: list[int] = field(default_factory=list)
    train_minutes: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    spread: list[float] = field(default_factory=list)
    per_file: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    images_per_s: float | None = None


@dataclass
class AblationReport:
    """The summary of an ablation, as written to ``summary.md`` / ``summary.json``.

    Attributes:
        variants: One summary per variant, in the plan's order.
        points: The planned scoring points, in training images.
        files: The condition files scored.
        draws: Draws per file and point.
        folder: The study's folder.
    """

    variants: list[VariantSummary]
    points: list[int]
    files: list[str]
    draws: int
    folder: Path

    def best(self) -> VariantSummary | None:
        """The variant with the highest accuracy at the last point every variant reached."""
        reached = [v for v in self.variants if v.images]
        if not reached:
            return None
        common = min(len(v.images) for v in reached)
        return max(reached, key=lambda v: v.accuracy[common - 1])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "points": self.points,
            "files": self.files,
            "draws": self.draws,
            "variants": [v.__dict__ for v in self.variants],
        }

    @classmethod
    def read(cls, folder: str | Path) -> AblationReport:
        """Read ``summary.json`` from a study's folder."""
        folder = Path(folder)
        data = json.loads((folder / REPORT_FILES["json"]).read_text(encoding="utf-8"))
        variants = []
        for v in data["variants"]:
            v["per_file"] = {k: [tuple(p) for p in points] for k, points in v["per_file"].items()}
            variants.append(VariantSummary(**v))
        return cls(variants, data["points"], data["files"], data["draws"], folder)

    def markdown(self) -> str:
        """The report's table as markdown: accuracy (mean ± std over draws) at every point."""
        lines = [
            f"Label accuracy (mean over {', '.join(self.files)}; mean ± std over {self.draws} draws) "
            "by training images seen.",
            "",
        ]
        head = ["variant", "changes", "parameters", "train images/s", *[f"{p:,} images" for p in self.points]]
        head += [f"{f} (last)" for f in self.files] + ["training minutes (last)"]
        lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for v in self.variants:
            changes = ", ".join(f"`{k}={json.dumps(val)}`" for k, val in v.changes.items()) or "(base)"
            cells = [v.name, changes, f"{v.parameters / 1e6:.2f} M" if v.parameters else "-"]
            cells.append(f"{v.images_per_s:.1f}" if v.images_per_s else "-")
            by_point = dict(zip(v.images, zip(v.accuracy, v.spread, strict=True), strict=True))
            for i, _ in enumerate(self.points):
                reached = v.images[i] if i < len(v.images) else None
                cells.append(f"{by_point[reached][0]:.3f} ± {by_point[reached][1]:.3f}" if reached else "-")
            for f in self.files:
                last = v.per_file.get(f, [])
                cells.append(f"{last[-1][0]:.3f} ± {last[-1][1]:.3f}" if last else "-")
            cells.append(f"{v.train_minutes[-1]:.1f}" if v.train_minutes else "-")
            lines.append("| " + " | ".join(cells) + " |")
        best = self.best()
        if best is not None:
            lines += ["", f"Best at the last point all variants reached: **{best.name}**."]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.markdown()


def _images_per_s(run: Path) -> float | None:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    rates = [json.loads(line).get("images_per_s") for line in path.read_text(encoding="utf-8").splitlines()]
    rates = [r for r in rates if r]
    return statistics.median(rates) if rates else None


def summarise(
    plan: AblationPlan, recipes: dict[str, Recipe], results: Sequence[PointResult], folder: Path
) -> AblationReport:
    """Gather the scores of each variant of the plan into its curve."""
    files = [Path(f).stem for f in plan.files]
    variants = []
    for name in plan.variants:
        rows = sorted((r for r in results if r.variant == name), key=lambda r: r.images)
        summary = VariantSummary(name, plan.variants[name])
        for row in rows:
            mean, std = _mean_std(row.mean_accuracy())
            summary.parameters = row.parameters
            summary.images.append(row.images)
            summary.train_minutes.append(row.train_seconds / 60)
            summary.accuracy.append(mean)
            summary.spread.append(std)
            for f in files:
                summary.per_file.setdefault(f, []).append(_mean_std(row.accuracy[f]))
        summary.images_per_s = _images_per_s(Path(recipes[name].trainer.output_dir))
        variants.append(summary)
    return AblationReport(variants, list(plan.points), files, plan.draws, folder)


def write_report(
    plan: AblationPlan, recipes: dict[str, Recipe], results: Sequence[PointResult], folder: Path
) -> AblationReport:
    """Write ``summary.md``, ``summary.json``, ``accuracy.png`` (accuracy against training images,
    one curve per variant, bars of ± one std over draws) and ``accuracy_time.png`` (against
    minutes of training)."""
    report = summarise(plan, recipes, results, folder)
    atomic_write_text(folder / REPORT_FILES["markdown"], report.markdown())
    atomic_write_json(folder / REPORT_FILES["json"], report.to_dict())
    reached = [v for v in report.variants if v.images]
    title = f"label accuracy (mean of {' and '.join(report.files)}, ± std over {report.draws} draws)"
    errors = {v.name: v.spread for v in reached}
    axes = (
        ("accuracy", "training images seen", lambda v: v.images, True),
        ("accuracy_time", "minutes of training steps", lambda v: v.train_minutes, False),
    )
    for kind, x_label, xs, ticks_at_data in axes:
        series = {v.name: (xs(v), v.accuracy) for v in reached}
        plot_lines(series, folder / REPORT_FILES[kind], title=title, x_label=x_label, errors=errors, x_ticks=ticks_at_data)
    return report
