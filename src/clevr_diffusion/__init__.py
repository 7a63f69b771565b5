"""clevr-diffusion: label-conditioned DDPMs for CLEVR-style scenes and the i-CLEVR benchmark.

The package is split the way the method is: ``models`` holds networks only, ``diffusion``
the noise process and the samplers, ``training`` the training loop, ``data`` the data sets,
``labels`` the object vocabulary, ``render`` the built-in CLEVR scene renderer and
``evaluation`` the i-CLEVR evaluator and metric.
"""

__version__ = "0.1.0"

from .data import ClevrDataset, DatasetError, RenderedClevrDataset, make_toy_dataset
from .evaluation import AccuracyResult, ClevrEvaluator, label_accuracy
from .diffusion import DDPMSampler, NoiseConfig, NoiseProcess, SampleOutput, SamplingConfig
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
from .training import DDPMTrainer, TrainerConfig

__all__ = [
    "AccuracyResult",
    "COLORS",
    "OBJECT_NAMES",
    "SHAPES",
    "CheckpointMismatchError",
    "ClevrDataset",
    "ClevrEvaluator",
    "ConditionalUNet",
    "DDPMSampler",
    "DDPMTrainer",
    "DatasetError",
    "LabelError",
    "NoiseConfig",
    "NoiseProcess",
    "RenderedClevrDataset",
    "SampleOutput",
    "SamplingConfig",
    "TrainerConfig",
    "UNetConfig",
    "Vocabulary",
    "__version__",
    "decode_labels",
    "encode_batch",
    "encode_labels",
    "label_accuracy",
    "load_conditions",
    "make_toy_dataset",
]
