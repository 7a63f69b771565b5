"""Everything the i-CLEVR benchmark asks for, from one trained model, in one call.

`evaluate` samples the 32 label sets of ``test.json`` and ``new_test.json``, saves them as
``images/test/0.png ... 31.png`` (and ``images/new_test/...``) in file order, draws the two
8 x 4 grids and the denoising row of ``["red sphere", "cyan cylinder", "cyan cube"]``, scores
every file with an evaluator and writes ``report.json`` and ``report.md``. With ``seeds=N`` it
repeats the draw N times and reports the mean and spread of the accuracies (one label is worth
1.2-1.4 points, so a single draw is noisy).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..diffusion.sampler import DDPMSampler, SampleOutput
from ..hub import is_repo_id
from ..labels import Vocabulary, load_conditions
from ..utils.images import save_grid, save_images, to_uint8
from ..utils.io import atomic_write_json, atomic_write_text
from .evaluator import ClevrEvaluator
from .metrics import AccuracyResult

__all__ = ["DENOISING_LABELS", "EvaluationResult", "FileEvaluation", "default_device", "evaluate", "load_evaluator"]

logger = logging.getLogger(__name__)

DENOISING_LABELS: tuple[str, ...] = ("red sphere", "cyan cylinder", "cyan cube")
"""The label set of the benchmark's denoising figure (``test.json[25]``)."""

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
DENOISING_PNG = "denoising.png"


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


def _markdown(result: EvaluationResult) -> str:
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


def default_device() -> str:
    """``"cuda"`` when a GPU is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_evaluator(
    evaluator: ClevrEvaluator | str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    trusted: bool = False,
) -> ClevrEvaluator:
    """The evaluator `evaluate` scores with.

    Args:
        evaluator: ``None`` or ``"bundled"``: the library's own (bundled) weights; a path to a
            ``.safetensors`` file: weights from ``clevr-diffusion train-evaluator``
            (`ClevrEvaluator.from_file`); any other path: the official ``checkpoint.pth``
            (`ClevrEvaluator.from_checkpoint`); a `ClevrEvaluator`: returned as it is.
        device: Where to load a new one.
        trusted: Passed to `ClevrEvaluator.from_checkpoint`.
    """
    if isinstance(evaluator, ClevrEvaluator):
        return evaluator
    if evaluator is None or os.fspath(evaluator) == "bundled":
        return ClevrEvaluator(device=device)
    path = Path(evaluator)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise FileNotFoundError(f"no evaluator weights at {path}")
        return ClevrEvaluator.from_file(path, device=device)
    return ClevrEvaluator.from_checkpoint(path, device=device, trusted=trusted)


def _condition_name(name: str | os.PathLike[str]) -> str:
    return Path(os.fspath(name)).name.removesuffix(".json")


def _find(conditions: list[list[str]], wanted: Sequence[str]) -> int | None:
    target = sorted(wanted)
    return next((i for i, item in enumerate(conditions) if sorted(item) == target), None)


def _as_saved(images: torch.Tensor) -> torch.Tensor:
    """The images exactly as their 8-bit PNGs read back, in [-1, 1]."""
    return to_uint8(images).float() / 127.5 - 1


def _evaluate_file(
    sampler: DDPMSampler,
    evaluator: ClevrEvaluator,
    name: str,
    label_sets: list[list[str]],
    draws: list[int],
    settings: dict[str, Any],
    out: Path,
    trajectory_frames: int,
) -> tuple[FileEvaluation, SampleOutput]:
    """Draw and score one condition file once per seed; save the first draw's images and grid.

    Returns the file's scores and the first draw (with its trajectory when
    ``trajectory_frames`` is not 0).
    """
    targets = Vocabulary.default().encode_batch(label_sets)
    acc, img_acc, sample_s, eval_s = [], [], [], []
    by_count: dict[int, tuple[int, int]] = {}
    results: list[AccuracyResult] = []
    first: SampleOutput | None = None
    for s in draws:
        t0 = time.perf_counter()
        keep = bool(trajectory_frames) and first is None
        output = sampler.sample(
            label_sets, seed=s, return_trajectory=keep, trajectory_frames=trajectory_frames or 2, **settings
        )
        t1 = time.perf_counter()
        scored = evaluator.accuracy(_as_saved(output.images), targets)
        t2 = time.perf_counter()
        sample_s.append(t1 - t0)
        eval_s.append(t2 - t1)
        acc.append(float(scored.label_accuracy))
        img_acc.append(float(scored.image_accuracy))
        results.append(scored)
        for k, (hits, total) in scored.by_count.items():
            old = by_count.get(k, (0, 0))
            by_count[k] = (old[0] + hits, old[1] + total)
        logger.info(
            "%s.json, seed %d: accuracy %.3f (%d/%d), %.1f s to sample, %.1f s to score",
            name, s, scored.label_accuracy, scored.hits, scored.total, t1 - t0, t2 - t1,
        )  # fmt: skip
        if first is None:
            first = output
            save_images(output.images, out / "images" / name)
            save_grid(output.images, out / f"{name}_grid.png", nrow=8)
    assert first is not None
    evaluation = FileEvaluation(
        name=name,
        conditions=len(label_sets),
        labels=sum(len(item) for item in label_sets),
        seeds=list(draws),
        label_accuracies=acc,
        image_accuracies=img_acc,
        first=results[0],
        by_count=by_count,
        sample_seconds=sample_s,
        evaluate_seconds=eval_s,
        images_dir=out / "images" / name,
        grid=out / f"{name}_grid.png",
    )
    return evaluation, first


def evaluate(
    model: str | os.PathLike[str] | DDPMSampler | None,
    output_dir: str | os.PathLike[str],
    evaluator: ClevrEvaluator | str | os.PathLike[str] | None = None,
    files: Sequence[str | os.PathLike[str]] = ("test", "new_test"),
    method: str | None = None,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    seed: int = 0,
    seeds: int = 1,
    device: str | torch.device | None = None,
    progress: bool = True,
    trajectory_frames: int = 10,
    *,
    preset: str | None = None,
    guidance_rescale: float | None = None,
    guidance_mode: str | None = None,
    compile: bool = False,  # noqa: A002 - mirrors torch.compile
) -> EvaluationResult:
    """Sample, save and score everything the i-CLEVR benchmark asks for.

    Writes to ``output_dir``: ``images/NAME/0.png ...`` (one PNG per label set, in file order),
    ``NAME_grid.png`` (8 a row, 2 px borders) for each condition file, ``denoising.png`` (the
    denoising row of ``["red sphere", "cyan cylinder", "cyan cube"]``, noise left) and the
    reports ``report.json`` and ``report.md``. Accuracies are measured on the images exactly as
    saved (8-bit), so re-scoring the PNGs gives the same numbers.

    Args:
        model: A model folder (from `DDPMSampler.save_pretrained` or the trainer's ``RUN/model``),
            a bundled model's name (``"clevr-ddpm-small"``; ``None``: the bundled default), a Hub
            repo id, or a `DDPMSampler`.
        output_dir: Where to write (created if missing; files of an earlier run are replaced).
        evaluator: A `ClevrEvaluator`; a path to the official ``checkpoint.pth`` (loaded with
            `ClevrEvaluator.from_checkpoint`) or to weights from ``train-evaluator``
            (``.safetensors``); or ``None`` for the library's bundled evaluator.
        files: Condition files: ``"test"``, ``"new_test"`` or paths to JSON lists of label lists.
        method: ``"ddpm"``, ``"ddim"``, ``"dpm++"`` or ``"unipc"`` (``None``: the preset's,
            then the model's saved setting).
        num_inference_steps: Denoising steps (``None``: the preset's, then the saved setting,
            then the method's).
        guidance_scale: Classifier-free guidance scale (``None``: the saved setting).
        seed: Seed of the first draw; with the same settings, its images equal those of
            ``DDPMSampler.sample(conditions, seed=seed)``.
        seeds: Draws per file, with seeds ``seed, seed + 1, ...``; the first draw's images are
            saved, every draw is scored.
        device: Where to sample and score (``None``: a loaded folder goes to CUDA when available;
            a passed sampler and evaluator stay where they are).
        progress: Show progress bars.
        trajectory_frames: Frames of the denoising row, noise and image included.
        preset: A sampling preset such as ``"dpm++-20"``; explicit ``method`` and
            ``num_inference_steps`` win over it (`DDPMSampler.resolve_settings`).
        guidance_rescale: Guidance rescale in [0, 1] (``None``: the saved setting, 0 = off).
        guidance_mode: ``"joint"`` or ``"composable"`` (``None``: the saved setting).
        compile: Sample through ``torch.compile`` (`DDPMSampler`'s ``compile``); ``False``
            leaves a passed sampler's own setting.

    Returns:
        An `EvaluationResult`; ``print`` it for a summary.

    Raises:
        FileNotFoundError: If the model folder or the evaluator's weights are missing.
        ValueError: For bad settings or label sets.
    """
    started = time.perf_counter()
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    if trajectory_frames < 2:
        raise ValueError(f"trajectory_frames must be >= 2 (noise and image), got {trajectory_frames}")
    names = [_condition_name(f) for f in files]
    if not names:
        raise ValueError("no condition files to evaluate")
    if len(set(names)) != len(names):
        raise ValueError(f"condition files must have different names, got {names}")
    conditions = {name: load_conditions(f) for name, f in zip(names, files, strict=True)}

    if not isinstance(model, DDPMSampler):
        from ..pretrained import resolve_model_name

        model = resolve_model_name(model)  # a bundled name becomes its folder in the package
    if isinstance(model, DDPMSampler):
        sampler, model_path = model, None
        if device is not None:
            sampler.model.to(device)
    elif is_repo_id(model) and not Path(model).exists():
        sampler = DDPMSampler.from_pretrained(os.fspath(model), device=device or default_device())
        model_path = os.fspath(model)
    else:
        folder = Path(model)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{folder} is not a model folder (no config.json); give e.g. RUN/model from `train`"
            )
        sampler = DDPMSampler.from_pretrained(folder, device=device or default_device())
        model_path = str(folder.resolve())
    if compile:
        sampler.compile = True
    run_device = str(sampler.device)
    ev = load_evaluator(evaluator, device if device is not None else run_device)
    method, steps, guidance = sampler.resolve_settings(method, num_inference_steps, guidance_scale, preset)
    rescale, mode = sampler.resolve_guidance(guidance_rescale, guidance_mode)
    settings = dict(
        method=method, num_inference_steps=steps, guidance_scale=guidance, guidance_rescale=rescale,
        guidance_mode=mode, progress=progress,
    )  # fmt: skip

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    draws = [seed + k for k in range(seeds)]
    # The denoising row is the saved image's own trajectory when the label set is in a file
    # and the sampler takes enough steps for every frame to differ; else a separate draw.
    source = next(((n, i) for n in names if (i := _find(conditions[n], DENOISING_LABELS)) is not None), None)
    if steps < trajectory_frames:
        source = None
    results: dict[str, FileEvaluation] = {}
    trajectory: SampleOutput | None = None
    for name in names:
        keep = trajectory_frames if source is not None and source[0] == name else 0
        results[name], output = _evaluate_file(sampler, ev, name, conditions[name], draws, settings, out, keep)
        if keep and len(output.frame_steps) >= trajectory_frames:
            trajectory = output
    denoising = out / DENOISING_PNG
    if trajectory is not None and source is not None:
        index, origin = source[1], f"images/{source[0]}/{source[1]}.png"
    else:
        index, origin = 0, "separate draw"
        row_steps = min(max(steps, trajectory_frames), sampler.noise_config.num_train_timesteps)
        trajectory = sampler.sample(
            [list(DENOISING_LABELS)],
            seed=draws[0],
            return_trajectory=True,
            trajectory_frames=trajectory_frames,
            **{**settings, "num_inference_steps": row_steps},
        )
    trajectory.save_trajectory(denoising, index=index)

    result = EvaluationResult(
        files=results,
        output_dir=out,
        denoising=denoising,
        denoising_frame_steps=list(trajectory.frame_steps),
        denoising_source=origin,
        report_json=out / REPORT_JSON,
        report_md=out / REPORT_MD,
        model=model_path,
        evaluator=ev.kind,
        method=method,
        num_inference_steps=steps,
        guidance_scale=guidance,
        image_size=int(trajectory.images.shape[-1]),
        device=run_device,
        preset=preset.strip().lower() if preset else None,
        guidance_rescale=rescale,
        guidance_mode=mode,
        compiled=sampler.compile,
    )
    result.wall_seconds = time.perf_counter() - started
    atomic_write_json(result.report_json, result.to_dict())
    atomic_write_text(result.report_md, _markdown(result))
    return result
