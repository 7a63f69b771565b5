"""clevr-diffusion: label-conditioned DDPMs for CLEVR-style scenes and the i-CLEVR benchmark.

The package is split the way the method is: ``models`` holds networks only, ``diffusion``
the noise process and the samplers, ``training`` the training loop, ``data`` the data sets,
``labels`` the object vocabulary, ``render`` the built-in CLEVR scene renderer,
``evaluation`` the i-CLEVR evaluator and metric, and ``pretrained`` the models shipped in the
package (``DDPMSampler.from_pretrained()`` loads the default one offline).
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
from .pretrained import DEFAULT_MODEL, PRETRAINED_MODELS, bundled_model_dir, export_bundle
from .training import DDPMTrainer, DivergenceError, RunFolderError, TrainerConfig

__all__ = [
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
    "RenderedClevrDataset",
    "RunFolderError",
    "SampleOutput",
    "SamplingConfig",
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
]
