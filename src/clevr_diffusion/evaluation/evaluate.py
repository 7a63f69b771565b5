"""Everything the i-CLEVR benchmark asks for, from one trained model, in one call (the pipeline).

`evaluate` samples the 32 label sets of ``test.json`` and ``new_test.json``, saves them as
``images/test/0.png ... 31.png`` (and ``images/new_test/...``) in file order, draws the two
8 x 4 grids and the denoising row of ``["red sphere", "cyan cylinder", "cyan cube"]``, scores
every file with an evaluator and writes ``report.json`` and ``report.md``. With ``seeds=N`` it
repeats the draw N times and reports the mean and spread of the accuracies (one label is worth
1.2-1.4 points, so a single draw is noisy). What it returns and writes is `evaluation.report`'s.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ..diffusion.sampler import DDPMSampler, SampleOutput
from ..diffusion.settings import SamplingSettings
from ..labels import Vocabulary, load_conditions
from ..model_folder import find_model_folder, resolve_model_folder
from ..utils.images import as_saved_png, save_grid, save_images
from ..utils.io import atomic_write_json, atomic_write_text
from .evaluator import ClevrEvaluator
from .metrics import AccuracyResult
from .report import (
    DENOISING_LABELS,
    DENOISING_PNG,
    REPORT_JSON,
    REPORT_MD,
    EvaluationResult,
    FileEvaluation,
    report_markdown,
)

__all__ = ["DENOISING_LABELS", "EvaluationResult", "FileEvaluation", "default_device", "evaluate", "load_evaluator"]

logger = logging.getLogger(__name__)


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


def _evaluate_file(
    sampler: DDPMSampler,
    evaluator: ClevrEvaluator,
    name: str,
    label_sets: list[list[str]],
    draws: list[int],
    settings: SamplingSettings,
    out: Path,
    trajectory_frames: int,
    progress: bool,
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
            label_sets, settings, seed=s, return_trajectory=keep, trajectory_frames=trajectory_frames or 2, progress=progress
        )
        t1 = time.perf_counter()
        scored = evaluator.accuracy(as_saved_png(output.images), targets)
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


def _load_sampler(model: str | os.PathLike[str] | None, device: str | torch.device | None) -> tuple[DDPMSampler, str]:
    """The sampler of a model folder, bundled name or Hub repo id, and how the report names it."""
    source = resolve_model_folder(model)
    if source.repo_id is None:
        folder = find_model_folder(source.folder)  # a run folder's model/ too
        return DDPMSampler.from_pretrained(folder, device=device or default_device()), str(folder.resolve())
    return DDPMSampler.from_source(source, device=device or default_device()), source.repo_id


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
    settings: SamplingSettings | None = None,
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
        model: A model folder (from `DDPMSampler.save_pretrained` or the trainer's ``RUN/model``;
            ``RUN`` works too), a bundled model's name (``"clevr-ddpm-small"``; ``None``: the
            bundled default), a Hub repo id, or a `DDPMSampler`.
        output_dir: Where to write (created if missing; files of an earlier run are replaced).
        evaluator: A `ClevrEvaluator`; a path to the official ``checkpoint.pth`` (loaded with
            `ClevrEvaluator.from_checkpoint`) or to weights from ``train-evaluator``
            (``.safetensors``); or ``None`` for the library's bundled evaluator.
        files: Condition files: ``"test"``, ``"new_test"`` or paths to JSON lists of label lists.
        method: Shorthand for ``settings.method``; wins over it.
        num_inference_steps: Shorthand for ``settings.num_inference_steps``; wins over it.
        guidance_scale: Shorthand for ``settings.guidance_scale``; wins over it.
        seed: Seed of the first draw; with the same settings, its images equal those of
            ``DDPMSampler.sample(conditions, settings, seed=seed)``.
        seeds: Draws per file, with seeds ``seed, seed + 1, ...``; the first draw's images are
            saved, every draw is scored.
        device: Where to sample and score (``None``: a loaded folder goes to CUDA when available;
            a passed sampler and evaluator stay where they are).
        progress: Show progress bars.
        trajectory_frames: Frames of the denoising row, noise and image included.
        settings: The sampling settings (`SamplingSettings`); fields left ``None`` come from
            the model's saved settings, as for `DDPMSampler.sample`.
        preset: Shorthand for ``settings.preset``; wins over it.
        guidance_rescale: Shorthand for ``settings.guidance_rescale``; wins over it.
        guidance_mode: Shorthand for ``settings.guidance_mode``; wins over it.
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

    if isinstance(model, DDPMSampler):
        sampler, model_path = model, None
        if device is not None:
            sampler.model.to(device)
    else:
        sampler, model_path = _load_sampler(model, device)
    if compile:
        sampler.compile = True
    run_device = str(sampler.device)
    ev = load_evaluator(evaluator, device if device is not None else run_device)
    chosen = sampler.resolve(
        settings,
        preset=preset,
        method=method,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        guidance_rescale=guidance_rescale,
        guidance_mode=guidance_mode,
    )
    steps = chosen.num_inference_steps
    assert steps is not None  # resolve decides every field

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
        results[name], output = _evaluate_file(sampler, ev, name, conditions[name], draws, chosen, out, keep, progress)
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
            chosen.override(num_inference_steps=row_steps),
            seed=draws[0],
            return_trajectory=True,
            trajectory_frames=trajectory_frames,
            progress=progress,
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
        method=str(chosen.method),
        num_inference_steps=steps,
        guidance_scale=float(chosen.guidance_scale or 0.0),
        image_size=int(trajectory.images.shape[-1]),
        device=run_device,
        preset=chosen.preset,
        guidance_rescale=float(chosen.guidance_rescale or 0.0),
        guidance_mode=str(chosen.guidance_mode),
        compiled=sampler.compile,
    )
    result.wall_seconds = time.perf_counter() - started
    atomic_write_json(result.report_json, result.to_dict())
    atomic_write_text(result.report_md, report_markdown(result))
    return result
