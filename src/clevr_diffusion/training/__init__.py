"""Training: the DDPM trainer, its config, EMA weights, checkpoints, the learning-rate schedule,
and the training of the library's own evaluator (`clevr_diffusion.training.evaluator`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import install_lazy_exports

_EXPORTS: dict[str, str] = {
    "TrainerConfig": ".config",
    "EMA": ".ema",
    "DDPMTrainer": ".trainer",
    "DivergenceError": ".trainer",
    "ResumeMismatchError": ".trainer",
    "RunFolderError": ".trainer",
    "EvaluatorTrainingConfig": ".evaluator_config",
    "train_evaluator": ".evaluator",
    "learning_rate_at": ".schedule",
    "RECIPES": ".recipe",
    "Recipe": ".recipe",
    "RecipeError": ".recipe",
    "get_recipe": ".recipe",
}
"""Where each public name lives; its module is imported on first access (PEP 562), so the
command's parsers read `EvaluatorTrainingConfig` without importing accelerate."""

if TYPE_CHECKING:  # what type checkers and the API docs see
    from .config import TrainerConfig
    from .ema import EMA
    from .evaluator import train_evaluator
    from .evaluator_config import EvaluatorTrainingConfig
    from .recipe import RECIPES, Recipe, RecipeError, get_recipe
    from .schedule import learning_rate_at
    from .trainer import DDPMTrainer, DivergenceError, ResumeMismatchError, RunFolderError
else:  # at run time a name's module is imported on its first use
    install_lazy_exports(__name__, _EXPORTS)

__all__ = [
    "EMA",
    "RECIPES",
    "Recipe",
    "RecipeError",
    "get_recipe",
    "DDPMTrainer",
    "DivergenceError",
    "EvaluatorTrainingConfig",
    "ResumeMismatchError",
    "RunFolderError",
    "TrainerConfig",
    "learning_rate_at",
    "train_evaluator",
]
