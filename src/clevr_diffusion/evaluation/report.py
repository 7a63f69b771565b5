"""What `evaluate` measured and wrote: per-file scores, the whole result, ``report.json`` and ``report.md``."""

from __future__ import annotations

import datetime as _dt
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..model_folder import REPORT_NAME
from .metrics import AccuracyResult

__all__ = [
    "DENOISING_LABELS",
    "DENOISING_PNG",
    "REPORT_JSON",
    "REPORT_MD",
    "EvaluationResult",
    "FileEvaluation",
    "report_markdown",
]

DENOISING_LABELS: tuple[str, ...] = ("red sphere", "cyan cylinder", "cyan cube")
"""The label set of the benchmark's denoising figure (``test.json[25]``)."""

# What `evaluate` writes into its output folder, besides ``images/`` and the grids.
REPORT_JSON = REPORT_NAME
"""The machine-readable report (`EvaluationResult.to_dict`); model cards read it."""
REPORT_MD = "report.md"
"""The report to read (`report_markdown`)."""
DENOISING_PNG = "denoising.png"
"""The denoising row of `DENOISING_LABELS`."""


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    """Mean, sample standard deviation (``None`` for one value), min and max."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "min": min(values),
        "max": max(values),
    }


@dataclass
class FileEvaluation:
    """The scores of one condition file over all seeds.

    Attributes:
        name: The file's name without ``.json`` (``"test"``, ``"new_test"``).
        conditions: Label sets in the file (images per draw).
        labels: Objects in the file over all its label sets (72 for test, 84 for new_test).
        seeds: The seeds drawn, in order; the first draw's images are the saved ones.
        label_accuracies: The official label-level accuracy of each draw.
        image_accuracies: The share of images with every object right, per draw.
        first: The evaluator's full result for the first draw (the saved images).
        by_count: Objects per image -> (hits, labels), summed over all draws.
        sample_seconds: Seconds spent sampling, per draw.
        evaluate_seconds: Seconds spent scoring, per draw.
        images_dir: Folder of the first draw's images (``0.png ...``).
        grid: The first draw's 8-a-row grid.
    """

    name: str
    conditions: int
    labels: int
    seeds: list[int]
    label_accuracies: list[float]
    image_accuracies: list[float]
    first: AccuracyResult
    by_count: dict[int, tuple[int, int]]
    sample_seconds: list[float]
    evaluate_seconds: list[float]
    images_dir: Path
    grid: Path

    @property
    def accuracy(self) -> float:
        """Mean label-level accuracy over the draws (the first draw's with one seed)."""
        return statistics.fmean(self.label_accuracies)

    @property
    def std(self) -> float | None:
        """Sample standard deviation of the label-level accuracy (``None`` with one seed)."""
        return _spread(self.label_accuracies)["std"]

    @property
    def image_accuracy(self) -> float:
        """Mean image-level accuracy over the draws."""
        return statistics.fmean(self.image_accuracies)

    def summary(self) -> str:
        """One line: the file's accuracy (mean ± std over seeds when there are several)."""
        label = f"{self.name}.json"
        if len(self.seeds) == 1:
            acc = f"{self.accuracy:.3f} ({self.first.hits}/{self.first.total} labels)"
        else:
            acc = (
                f"{self.accuracy:.3f} ± {self.std:.3f} over {len(self.seeds)} seeds "
                f"(min {min(self.label_accuracies):.3f}, max {max(self.label_accuracies):.3f})"
            )
        return f"{label:<14} accuracy {acc}; all objects right in {self.image_accuracy:.1%} of images"

    def to_dict(self, root: Path | None = None) -> dict[str, Any]:
        """JSON-ready dict; paths relative to ``root`` when given."""

        def rel(path: Path) -> str:
            return os.path.relpath(path, root) if root is not None else str(path)

        return {
            "conditions": self.conditions,
            "labels": self.labels,
            "seeds": list(self.seeds),
            "label_accuracy": {**_spread(self.label_accuracies), "per_seed": list(self.label_accuracies)},
            "image_accuracy": {**_spread(self.image_accuracies), "per_seed": list(self.image_accuracies)},
            "by_count": {
                str(k): {"hits": h, "labels": n, "accuracy": h / n if n else None}
                for k, (h, n) in sorted(self.by_count.items())
            },
            "first_seed": self.first.to_dict(),
            "seconds": {"sample": list(self.sample_seconds), "evaluate": list(self.evaluate_seconds)},
            "images": rel(self.images_dir),
            "grid": rel(self.grid),
        }


@dataclass
class EvaluationResult:
    """What `evaluate` measured and wrote.

    Attributes:
        files: Per condition file (``"test"``, ``"new_test"``), its scores.
        output_dir: The folder everything was written to.
        denoising: The denoising row PNG.
        denoising_frame_steps: Denoising steps taken at each frame of the row (0: pure noise).
        denoising_source: Where the row comes from: ``"images/test/25.png"`` when it is that
            image's own denoising, else ``"separate draw"``.
        report_json: ``report.json``.
        report_md: ``report.md``.
        model: The model folder (``None`` when a sampler object was passed).
        evaluator: The evaluator's kind (``"bundled"``, ``"official"``, ``"random"``, ``"file"``).
        method: Sampling method used.
        num_inference_steps: Denoising steps per image.
        guidance_scale: Classifier-free guidance scale.
        image_size: Side of the sampled images in pixels.
        device: Device the sampler ran on.
        wall_seconds: Time the whole evaluation took.
        preset: The sampling preset asked for (``None``: none).
        guidance_rescale: Guidance rescale phi (0: off).
        guidance_mode: ``"joint"`` or ``"composable"`` guidance.
        compiled: Whether the network ran through ``torch.compile``.
    """

    files: dict[str, FileEvaluation]
    output_dir: Path
    denoising: Path
    denoising_frame_steps: list[int]
    denoising_source: str
    report_json: Path
    report_md: Path
    model: str | None
    evaluator: str
    method: str
    num_inference_steps: int
    guidance_scale: float
    image_size: int
    device: str
    wall_seconds: float = 0.0
    preset: str | None = None
    guidance_rescale: float = 0.0
    guidance_mode: str = "joint"
    compiled: bool = False
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    def __getitem__(self, name: str) -> FileEvaluation:
        return self.files[name.removesuffix(".json")]

    @property
    def seeds(self) -> list[int]:
        """The seeds drawn (the same for every file)."""
        return next(iter(self.files.values())).seeds if self.files else []

    def guidance(self) -> str:
        """The guidance settings in words, e.g. ``"guidance 2 (composable, rescale 0.7)"``."""
        extras = [self.guidance_mode] if self.guidance_mode != "joint" else []
        extras += [f"rescale {self.guidance_rescale:g}"] if self.guidance_rescale else []
        return f"guidance {self.guidance_scale:g}" + (f" ({', '.join(extras)})" if extras else "")

    def settings(self) -> str:
        """One line: evaluator, sampler settings and seeds."""
        seeds = self.seeds
        drawn = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"
        preset = f" (preset {self.preset})" if self.preset else ""
        return (
            f"evaluator {self.evaluator}; {self.method}, {self.num_inference_steps} steps{preset}, "
            f"{self.guidance()}, {self.image_size} px{', compiled' if self.compiled else ''}; {drawn}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The content of ``report.json`` (paths relative to `output_dir`)."""
        root = self.output_dir
        return {
            "clevr_diffusion_version": __version__,
            "created": self.created,
            "model": self.model,
            "evaluator": self.evaluator,
            "sampling": {
                "method": self.method,
                "num_inference_steps": self.num_inference_steps,
                "guidance_scale": self.guidance_scale,
                "guidance_rescale": self.guidance_rescale,
                "guidance_mode": self.guidance_mode,
                "preset": self.preset,
                "compile": self.compiled,
                "image_size": self.image_size,
                "device": self.device,
            },
            "seeds": self.seeds,
            "files": {name: f.to_dict(root) for name, f in self.files.items()},
            "denoising": {
                "path": os.path.relpath(self.denoising, root),
                "labels": list(DENOISING_LABELS),
                "frames": len(self.denoising_frame_steps),
                "frame_steps": list(self.denoising_frame_steps),
                "steps": self.denoising_frame_steps[-1] if self.denoising_frame_steps else 0,
                "source": self.denoising_source,
            },
            "wall_seconds": self.wall_seconds,
        }

    def __str__(self) -> str:
        lines = [self.settings()]
        lines += [f.summary() for f in self.files.values()]
        return "\n".join(lines)


def report_markdown(result: EvaluationResult) -> str:
    """The content of ``report.md``."""
    root = result.output_dir
    several = len(result.seeds) > 1
    lines = [
        "# i-CLEVR evaluation",
        "",
        f"- model: `{result.model}`" if result.model else "- model: (a sampler object)",
        f"- evaluator: {result.evaluator}",
        f"- sampling: {result.method}, {result.num_inference_steps} steps"
        + (f" (preset {result.preset})" if result.preset else "")
        + f", {result.guidance()}, {result.image_size} x {result.image_size} px, on {result.device}"
        + (" (compiled)" if result.compiled else ""),
        f"- seeds: {', '.join(map(str, result.seeds))}"
        + (" (images and grids below are from the first)" if several else ""),
        f"- clevr-diffusion {__version__}, {result.created}, {result.wall_seconds:.1f} s",
        "",
        "Label accuracy is the official metric: for each image the k highest-scoring objects "
        "(k = objects in its label set) are compared with its k true objects; hits / labels over "
        "the file. Image accuracy is the share of images with every object right.",
        "",
    ]
    if several:
        lines += [
            "| file | label accuracy (mean ± std) | min | max | per seed | image accuracy (mean) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for f in result.files.values():
            per_seed = ", ".join(f"{a:.3f}" for a in f.label_accuracies)
            lines.append(
                f"| {f.name}.json | {f.accuracy:.3f} ± {f.std:.3f} | {min(f.label_accuracies):.3f} | "
                f"{max(f.label_accuracies):.3f} | {per_seed} | {f.image_accuracy:.3f} |"
            )
    else:
        lines += ["| file | label accuracy | hits / labels | image accuracy |", "| --- | --- | --- | --- |"]
        for f in result.files.values():
            lines.append(
                f"| {f.name}.json | {f.accuracy:.3f} | {f.first.hits} / {f.first.total} | {f.image_accuracy:.3f} |"
            )
    counts = sorted({k for f in result.files.values() for k in f.by_count})
    lines += ["", "## By number of objects", "", "Label accuracy" + (" over all seeds." if several else "."), ""]
    lines += ["| file | " + " | ".join(f"{k} object{'s' if k > 1 else ''}" for k in counts) + " |"]
    lines += ["| --- |" + " --- |" * len(counts)]
    for f in result.files.values():
        cells = []
        for k in counts:
            hits, total = f.by_count.get(k, (0, 0))
            cells.append(f"{hits / total:.3f} ({hits}/{total})" if total else "-")
        lines.append(f"| {f.name}.json | " + " | ".join(cells) + " |")
    lines += ["", "## Grids", ""]
    for f in result.files.values():
        rel_images = Path(os.path.relpath(f.images_dir, root)).as_posix()
        lines += [
            f"### {f.name}.json",
            "",
            f"![{f.name}.json, 8 a row]({Path(os.path.relpath(f.grid, root)).as_posix()})",
            "",
            f"Images: `{rel_images}/0.png` ... `{rel_images}/{f.conditions - 1}.png`, in file order.",
            "",
        ]
    frames = result.denoising_frame_steps
    lines += [
        "## Denoising",
        "",
        f"![denoising of {', '.join(DENOISING_LABELS)}]({Path(os.path.relpath(result.denoising, root)).as_posix()})",
        "",
        f"{', '.join(DENOISING_LABELS)}: {len(frames)} frames from pure noise (left) to the image (right), "
        f"after {', '.join(map(str, frames))} denoising steps"
        + (f"; the last frame is `{result.denoising_source}`." if result.denoising_source != "separate draw" else "."),
        "",
    ]
    return "\n".join(lines)
