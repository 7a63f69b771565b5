"""Judging generated images as the i-CLEVR benchmark does.

`ClevrEvaluator` (a ResNet-18 in the official evaluator's layout, with the official weights or
the library's own), the official accuracy metric (`label_accuracy`), the benchmark's whole
hand-in for a model (`evaluate`: images, grids, denoising row, report) and training the
library's own evaluator on rendered, domain-randomised scenes (`train_evaluator`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import install_lazy_exports

_EXPORTS: dict[str, str] = {
    "EvaluationResult": ".evaluate",
    "FileEvaluation": ".evaluate",
    "evaluate": ".evaluate",
    "ClevrEvaluator": ".evaluator",
    "bundled_weights_dir": ".evaluator",
    "AccuracyResult": ".metrics",
    "label_accuracy": ".metrics",
    "ResNet18": ".resnet",
    "maxpool_from_metadata": ".resnet",
    "EvaluatorTrainingConfig": ".config",
    "augment": ".training",
    "heldout_accuracy": ".training",
    "render_training_set": ".training",
    "train_evaluator": ".training",
}
"""Where each public name lives; its module is imported on first access (PEP 562)."""

if TYPE_CHECKING:  # what type checkers and the API docs see
    from .evaluate import EvaluationResult, FileEvaluation, evaluate
    from .evaluator import ClevrEvaluator, bundled_weights_dir
    from .metrics import AccuracyResult, label_accuracy
    from .resnet import ResNet18, maxpool_from_metadata
    from .config import EvaluatorTrainingConfig
    from .training import augment, heldout_accuracy, render_training_set, train_evaluator
else:  # at run time a name's module is imported on its first use
    install_lazy_exports(__name__, _EXPORTS)

__all__ = [
    "AccuracyResult",
    "ClevrEvaluator",
    "EvaluationResult",
    "EvaluatorTrainingConfig",
    "FileEvaluation",
    "ResNet18",
    "augment",
    "bundled_weights_dir",
    "evaluate",
    "heldout_accuracy",
    "label_accuracy",
    "maxpool_from_metadata",
    "render_training_set",
    "train_evaluator",
]
