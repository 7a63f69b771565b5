"""clevr-diffusion: label-conditioned DDPMs for CLEVR-style scenes and the i-CLEVR benchmark.

The package is split the way the method is: ``models`` holds networks only, ``diffusion``
the noise process and the samplers, ``training`` the training loop, ``data`` the data sets,
``labels`` the object vocabulary, ``render`` the built-in CLEVR scene renderer,
``evaluation`` the i-CLEVR evaluator and metric, and ``pretrained`` the models shipped in the
package (``DDPMSampler.from_pretrained()`` loads the default one offline).
"""

__version__ = "0.2.0"

from typing import TYPE_CHECKING

from ._lazy import install_lazy_exports

_EXPORTS: dict[str, str] = {
    "ClevrDataset": ".data",
    "DatasetError": ".data",
    "RenderedClevrDataset": ".data",
    "make_toy_dataset": ".data",
    "AccuracyResult": ".evaluation",
    "ClevrEvaluator": ".evaluation",
    "label_accuracy": ".evaluation",
    "DDPMSampler": ".diffusion",
    "NoiseConfig": ".diffusion",
    "NoiseProcess": ".diffusion",
    "SampleOutput": ".diffusion",
    "SamplingConfig": ".diffusion",
    "SamplingSettings": ".diffusion",
    "COLORS": ".labels",
    "OBJECT_NAMES": ".labels",
    "SHAPES": ".labels",
    "LabelError": ".labels",
    "Vocabulary": ".labels",
    "decode_labels": ".labels",
    "encode_batch": ".labels",
    "encode_labels": ".labels",
    "load_conditions": ".labels",
    "CheckpointMismatchError": ".models",
    "ConditionalUNet": ".models",
    "UNetConfig": ".models",
    "DEFAULT_MODEL": ".constants",
    "PRETRAINED_MODELS": ".pretrained",
    "bundled_model_dir": ".pretrained",
    "export_bundle": ".pretrained",
    "DDPMTrainer": ".training",
    "DivergenceError": ".training",
    "RunFolderError": ".training",
    "TrainerConfig": ".training",
    "Recipe": ".training",
    "AblationPlan": ".ablation",
    "run_ablation": ".ablation",
}
"""Where each public name lives; its module is imported on first access (PEP 562)."""

if TYPE_CHECKING:  # what type checkers and the API docs see
    from .ablation import AblationPlan, run_ablation
    from .constants import DEFAULT_MODEL
    from .data import ClevrDataset, DatasetError, RenderedClevrDataset, make_toy_dataset
    from .diffusion import DDPMSampler, NoiseConfig, NoiseProcess, SampleOutput, SamplingConfig, SamplingSettings
    from .evaluation import AccuracyResult, ClevrEvaluator, label_accuracy
    from .labels import (
        COLORS,
        OBJECT_NAMES,
        SHAPES,
        LabelError,
        Vocabulary,
        decode_labels,
        encode_batch,
        encode_labels,
        load_conditions,
    )
    from .models import CheckpointMismatchError, ConditionalUNet, UNetConfig
    from .pretrained import PRETRAINED_MODELS, bundled_model_dir, export_bundle
    from .training import DDPMTrainer, DivergenceError, Recipe, RunFolderError, TrainerConfig
else:  # at run time a name's module is imported on its first use
    install_lazy_exports(__name__, _EXPORTS)

__all__ = [
    "AblationPlan",
    "AccuracyResult",
    "COLORS",
    "DEFAULT_MODEL",
    "OBJECT_NAMES",
    "PRETRAINED_MODELS",
    "SHAPES",
    "CheckpointMismatchError",
    "ClevrDataset",
    "ClevrEvaluator",
    "ConditionalUNet",
    "DDPMSampler",
    "DDPMTrainer",
    "DatasetError",
    "DivergenceError",
    "LabelError",
    "NoiseConfig",
    "NoiseProcess",
    "Recipe",
    "RenderedClevrDataset",
    "RunFolderError",
    "SampleOutput",
    "SamplingConfig",
    "SamplingSettings",
    "TrainerConfig",
    "UNetConfig",
    "Vocabulary",
    "__version__",
    "bundled_model_dir",
    "decode_labels",
    "encode_batch",
    "encode_labels",
    "export_bundle",
    "label_accuracy",
    "load_conditions",
    "make_toy_dataset",
    "run_ablation",
]
