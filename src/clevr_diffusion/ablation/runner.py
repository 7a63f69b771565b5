"""Running an ablation: train every variant to each scoring point, score it, write the report.

The output folder holds ``plan.json``; ``data/SIZEpx/`` (the rendered data, when the plan
renders it); per variant ``variants/NAME/recipe.json``, its training run ``run/`` (checkpoints,
``metrics.jsonl``, ``model/``) and ``grids/`` (the first draw of each condition file at each
point); ``results.json`` (every score, written after each point) and the report (`report`).
Work goes point by point: every variant reaches the first point and is scored before any
reaches the second, so an interrupted study already compares all variants. Started again, it
resumes: scored points are skipped and each run resumes from its newest checkpoint (training
is exact on resume, so the result is that of an uninterrupted study).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.dataset import ClevrDataset
from ..diffusion.sampler import DDPMSampler
from ..evaluation.evaluate import load_evaluator
from ..evaluation.evaluator import ClevrEvaluator
from ..labels import Vocabulary, load_conditions
from ..models.unet import ConditionalUNet
from ..render.dataset_writer import make_dataset
from ..training.checkpoint import find_latest_checkpoint, read_state
from ..training.recipe import Recipe
from ..training.trainer import DDPMTrainer, trains_on_cpu
from ..utils.images import as_saved_png, save_grid
from ..utils.io import atomic_write_json, remove_folder
from .plan import AblationPlan, PlanError, variant_folder
from .report import AblationReport, write_report

__all__ = ["PLAN_NAME", "RESULTS_NAME", "PointResult", "run_ablation"]

logger = logging.getLogger(__name__)

PLAN_NAME = "plan.json"
RESULTS_NAME = "results.json"
RECIPE_NAME = "recipe.json"

# Settings an ablation sets per run, so they never make two recipes differ.
_PER_RUN_KEYS = ("trainer.output_dir", "trainer.max_steps")


@dataclass
class PointResult:
    """The scores of one variant at one point.

    Attributes:
        variant: The variant's name.
        images: Training images seen (optimiser steps x images a step).
        step: Optimiser steps taken.
        train_seconds: Time spent in training steps up to here (checkpoints, grids and
            scoring left out), from the run's ``metrics.jsonl``.
        parameters: Trainable parameters of the network.
        accuracy: Condition file name to its label accuracy in [0, 1], one per draw.
        image_accuracy: Condition file name to the share of images with every object right,
            one per draw.
        sample_seconds: Wall time of sampling every draw of every file.
    """

    variant: str
    images: int
    step: int
    train_seconds: float
    parameters: int
    accuracy: dict[str, list[float]]
    image_accuracy: dict[str, list[float]]
    sample_seconds: float

    def mean_accuracy(self) -> list[float]:
        """Per draw, the label accuracy averaged over the condition files."""
        per_file = list(self.accuracy.values())
        return [sum(values) / len(values) for values in zip(*per_file, strict=True)]


def _state(cpu: bool | None = None) -> Any:
    """accelerate's process state (one process unless started by ``accelerate launch``); the
    first call makes it, on the CPU when ``cpu`` (see `trains_on_cpu`)."""
    from accelerate import PartialState

    return PartialState(cpu=bool(cpu))


def _check_against_saved(out: Path, plan: AblationPlan, recipes: dict[str, Recipe]) -> None:
    """Refuse to resume a folder scored with other settings or holding other recipes under the
    same variant names."""
    saved_path = out / PLAN_NAME
    if saved_path.is_file():
        saved = AblationPlan.load(saved_path)
        changed = sorted(k for k, v in plan.scoring().items() if saved.scoring()[k] != v)
        if changed:
            raise PlanError(
                f"{out} holds an ablation scored with other settings (differing: {', '.join(changed)}); "
                "use another output folder, or overwrite=True (--overwrite) to start it again"
            )
    elif (out / RESULTS_NAME).exists() or (out / "variants").exists():
        raise PlanError(f"{out} holds files of something else; use another output folder")
    for name, recipe in recipes.items():
        path = out / "variants" / variant_folder(name) / RECIPE_NAME
        if path.is_file():
            differences = {k: v for k, v in recipe.differences(Recipe.load(path)).items() if k not in _PER_RUN_KEYS}
            if differences:
                shown = "; ".join(f"{k}: {old!r} before, {new!r} now" for k, (new, old) in differences.items())
                raise PlanError(
                    f"variant {name!r} in {out} was trained with another recipe ({shown}); give the variant "
                    "another name, use another output folder, or overwrite=True (--overwrite)"
                )


def _load_results(out: Path) -> list[PointResult]:
    path = out / RESULTS_NAME
    if not path.is_file():
        return []
    rows = json.loads(path.read_text(encoding="utf-8"))["points"]
    return [PointResult(**row) for row in rows]


def _datasets(
    plan: AblationPlan, sizes: set[int], out: Path, device: torch.device, state: Any, progress: bool
) -> dict[int, ClevrDataset]:
    """The training data at each image size: the plan's folder, or the built-in data rendered
    once per size into ``out/data`` (by the main process; resumable)."""
    folders = {}
    for size in sorted(sizes):
        if plan.data is not None:
            folders[size] = Path(plan.data)
            continue
        folders[size] = out / "data" / f"{size}px"
        if state.is_main_process:
            make_dataset(
                folders[size], plan.render_scenes, width=size, height=size, seed=plan.render_seed,
                device=str(device), progress=progress,
            )  # fmt: skip
        state.wait_for_everyone()
    return {size: ClevrDataset(folder, image_size=size, preload=True) for size, folder in folders.items()}


def _train_seconds(run: Path, step: int) -> float:
    """Seconds of training steps up to ``step``, from the run's logged step times."""
    total, previous = 0.0, 0
    path = run / "metrics.jsonl"
    if not path.is_file():
        return math.nan
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "step_ms" not in row or row["step"] > step:
            continue
        total += row["step_ms"] * (row["step"] - previous) / 1000.0
        previous = row["step"]
    return total


def _score(
    name: str,
    model_dir: Path,
    grids: Path,
    images: int,
    step: int,
    train_seconds: float,
    plan: AblationPlan,
    evaluator: ClevrEvaluator,
    device: torch.device,
) -> PointResult:
    """Sample every condition file ``plan.draws`` times with the model's own sampling settings
    and score the images as saved (8-bit)."""
    sampler = DDPMSampler.from_pretrained(model_dir, device=device)
    vocabulary = Vocabulary.default()
    accuracy: dict[str, list[float]] = {}
    image_accuracy: dict[str, list[float]] = {}
    started = time.perf_counter()
    for file in plan.files:
        conditions = load_conditions(file)
        targets = vocabulary.encode_batch(conditions)
        key = Path(file).stem
        accuracy[key], image_accuracy[key] = [], []
        for draw in range(plan.draws):
            output = sampler.sample(conditions, seed=plan.eval_seed + draw, progress=False)
            scored = evaluator.accuracy(as_saved_png(output.images), targets)
            accuracy[key].append(float(scored.label_accuracy))
            image_accuracy[key].append(float(scored.image_accuracy))
            if draw == 0:
                save_grid(output.images, grids / f"{key}_{images:08d}.png", nrow=8)
    return PointResult(
        variant=name, images=images, step=step, train_seconds=train_seconds,
        parameters=sampler.model.num_parameters, accuracy=accuracy, image_accuracy=image_accuracy,
        sample_seconds=time.perf_counter() - started,
    )  # fmt: skip


def run_ablation(
    plan: AblationPlan,
    output_dir: str | os.PathLike[str],
    evaluator: ClevrEvaluator | str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> AblationReport:
    """Train and score every variant of ``plan`` into ``output_dir``, resuming what is there.

    Every variant trains with the same data, data order, seeds and initial-weight seed (the
    recipe's ``trainer.seed``) and sees ``plan.images`` images; at each of ``plan.points`` its
    EMA model samples each condition file ``plan.draws`` times with the model's own sampling
    settings (the recipe's ``sampling``), and the bundled evaluator (or ``evaluator``) scores
    the images. Under ``accelerate launch`` every process trains and the main one scores.

    Args:
        plan: The variants, budget, points and scoring.
        output_dir: The study's folder (see the module docstring); started again, it resumes.
        evaluator: A `ClevrEvaluator`, a path to its weights (the official ``checkpoint.pth``
            or ``train-evaluator`` output), or ``None`` for the bundled one.
        device: Where to score (default: the training device: CUDA when there is one and the
            recipe does not ask for the CPU).
        progress: Show progress bars.
        overwrite: Delete a study already in ``output_dir`` first.

    Returns:
        The `AblationReport` (also written as ``summary.md``, ``summary.json`` and plots).

    Raises:
        PlanError: If a variant's changes are invalid, or ``output_dir`` holds a study with other
            scoring settings or another recipe under a variant's name (without ``overwrite``).
    """
    out = Path(output_dir)
    recipes = plan.recipes()
    cpu = all(trains_on_cpu(r.trainer) for r in recipes.values())
    state = _state(cpu)
    if overwrite and state.is_main_process and out.exists():
        logger.warning("replacing the ablation in %s", out)
        remove_folder(out)
    state.wait_for_everyone()
    _check_against_saved(out, plan, recipes)

    processes = state.num_processes
    steps_of = {name: (lambda images, r=r: math.ceil(images / r.images_per_step(processes))) for name, r in recipes.items()}
    for name, recipe in recipes.items():
        run = out / "variants" / variant_folder(name) / "run"
        recipes[name] = recipe.override({"trainer.output_dir": str(run), "trainer.max_steps": steps_of[name](plan.images)})
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        plan.save(out / PLAN_NAME)
        for name, recipe in recipes.items():
            recipe.save(out / "variants" / variant_folder(name) / RECIPE_NAME)
    cpu = cpu or not torch.cuda.is_available()
    train_device = torch.device("cpu") if cpu else torch.device("cuda", state.local_process_index)
    score_device = torch.device(device) if device is not None else train_device
    datasets = _datasets(plan, {r.image_size for r in recipes.values()}, out, train_device, state, progress)
    judge = load_evaluator(evaluator, score_device) if state.is_main_process else None

    results = _load_results(out)
    done = {(r.variant, r.images) for r in results}
    for point in plan.points:
        for name, recipe in recipes.items():
            step = steps_of[name](point)
            images = step * recipe.images_per_step(processes)
            if (name, images) in done:
                continue
            run = Path(recipe.trainer.output_dir)
            latest = find_latest_checkpoint(run / "checkpoints")
            if latest is not None and int(read_state(latest)["step"]) > step:
                logger.warning("%s is already past %d images; it cannot be scored there", name, images)
                continue
            logger.info("ablation: %s to %d images (step %d)", name, images, step)
            torch.manual_seed(recipe.trainer.seed)  # every variant starts from the same draw of weights
            model = ConditionalUNet(recipe.unet.replace(sample_size=recipe.image_size))
            trainer = DDPMTrainer(model, datasets[recipe.image_size], recipe.noise, recipe.trainer, sampling=recipe.sampling)
            trainer.train(stop_at=step)
            if state.is_main_process:
                assert judge is not None
                result = _score(
                    name, trainer.model_dir, run.parent / "grids", images, step, _train_seconds(run, step), plan, judge,
                    score_device,
                )  # fmt: skip
                results.append(result)
                atomic_write_json(out / RESULTS_NAME, {"points": [asdict(r) for r in results]})
                write_report(plan, recipes, results, out)
                logger.info(
                    "ablation: %s at %d images: accuracy %s", name, images,
                    ", ".join(f"{k} {sum(v) / len(v):.3f}" for k, v in result.accuracy.items()),
                )  # fmt: skip
            done.add((name, images))
            state.wait_for_everyone()
    report = write_report(plan, recipes, results, out) if state.is_main_process else None
    state.wait_for_everyone()
    return report if report is not None else AblationReport.read(out)
