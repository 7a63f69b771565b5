"""Judging generated images as the i-CLEVR benchmark does.

`ClevrEvaluator` (a ResNet-18 in the official evaluator's layout, with the official weights or
the library's own), the official accuracy metric (`label_accuracy`), the benchmark's whole
hand-in for a model (`evaluate`: images, grids, denoising row; its report types in
`evaluation.report`) and the evaluator's accuracy on fresh renders (`heldout_accuracy`).
Training the library's own evaluator is `clevr_diffusion.training.evaluator`'s; its names
(`train_evaluator`, `EvaluatorTrainingConfig`, ...) are re-exported here, as is the network,
`clevr_diffusion.models.resnet.ResNet18`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import install_lazy_exports

_EXPORTS: dict[str, str] = {
    "EvaluationResult": ".report",
    "FileEvaluation": ".report",
    "evaluate": ".evaluate",
    "ClevrEvaluator": ".evaluator",
    "bundled_weights_dir": ".evaluator",
    "heldout_accuracy": ".heldout",
    "AccuracyResult": ".metrics",
    "label_accuracy": ".metrics",
    "ResNet18": "..models.resnet",
    "maxpool_from_metadata": "..models.resnet",
    "EvaluatorTrainingConfig": "..training.evaluator_config",
    "augment": "..training.evaluator",
    "render_training_set": "..training.evaluator",
    "train_evaluator": "..training.evaluator",
}
"""Where each public name lives; its module is imported on first access (PEP 562)."""

if TYPE_CHECKING:  # what type checkers and the API docs see
    from ..models.resnet import ResNet18, maxpool_from_metadata
    from ..training.evaluator import augment, render_training_set, train_evaluator
    from ..training.evaluator_config import EvaluatorTrainingConfig
    from .evaluate import evaluate
    from .evaluator import ClevrEvaluator, bundled_weights_dir
    from .heldout import heldout_accuracy
    from .metrics import AccuracyResult, label_accuracy
    from .report import EvaluationResult, FileEvaluation
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
