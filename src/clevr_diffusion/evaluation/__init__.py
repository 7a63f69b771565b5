"""Judging generated images as the i-CLEVR benchmark does.

`ClevrEvaluator` (a ResNet-18 in the official evaluator's layout, with the official weights or
the library's own), the official accuracy metric (`label_accuracy`), the benchmark's whole
hand-in for a model (`evaluate`: images, grids, denoising row, report) and training the
library's own evaluator on rendered, domain-randomised scenes (`train_evaluator`).
"""

from __future__ import annotations

from .evaluate import EvaluationResult, FileEvaluation, evaluate
from .evaluator import ClevrEvaluator, bundled_weights_dir
from .metrics import AccuracyResult, label_accuracy
from .resnet import ResNet18, maxpool_from_metadata
from .training import EvaluatorTrainingConfig, augment, heldout_accuracy, render_training_set, train_evaluator

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
