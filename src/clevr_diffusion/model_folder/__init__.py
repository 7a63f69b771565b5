"""The model folder: its files, and the one way from a name or path to a local folder.

Everything that knows what a model folder holds or where one comes from lives here:

- `layout`: the file names (``config.json``, ``sampler_config.json``, the weights and their
  Hugging Face shard layout, ``README.md``) and the run files beside a folder;
- `weights`: writing and reading weights through ``huggingface_hub``'s serialization;
- `bundled`: the models shipped inside the package;
- `resolve`: `resolve_model_folder`, from a bundled name, a local folder or a Hub repo id (with
  revision and token) to a local folder, once;
- `card` and `publish`: the model card and the upload to the Hub.

`ConditionalUNet`, `DDPMSampler`, `evaluate`, `export_bundle` and the command line go through
this package; it imports nothing of the library above `constants`, `utils` and `labels`, and
nothing heavy at import (``clevr-diffusion --help`` reads it).
"""

from __future__ import annotations

from .bundled import KNOWN_MODELS, available_models, bundled_model_dir, bundled_model_name, bundled_models_root
from .card import CARD_MARKER, model_card, write_model_card
from .layout import (
    CONFIG_NAME,
    EMA_PREFIX,
    EMA_WEIGHTS_NAME,
    EVALUATION_DIR,
    MAX_SHARD_BYTES,
    MODEL_CARD_NAME,
    MODEL_DIR,
    REPORT_NAME,
    SAMPLER_CONFIG_NAME,
    SCHEDULER_CONFIG_NAME,
    TRAINER_CONFIG_NAME,
    UPLOAD_PATTERNS,
    WEIGHTS_NAME,
    WEIGHTS_PREFIX,
    WeightFiles,
    find_model_folder,
    find_weights,
    is_model_folder,
    read_evaluation_report,
    read_training_config,
    weight_set,
)
from .publish import PushToHubMixin, push_folder, push_pretrained
from .resolve import (
    HubUnreachableError,
    ModelSource,
    check_repo_id,
    is_repo_id,
    resolve_model_folder,
    resolve_model_name,
)

__all__ = [
    "CARD_MARKER",
    "CONFIG_NAME",
    "EMA_PREFIX",
    "EMA_WEIGHTS_NAME",
    "EVALUATION_DIR",
    "KNOWN_MODELS",
    "MAX_SHARD_BYTES",
    "MODEL_CARD_NAME",
    "MODEL_DIR",
    "REPORT_NAME",
    "SAMPLER_CONFIG_NAME",
    "SCHEDULER_CONFIG_NAME",
    "TRAINER_CONFIG_NAME",
    "UPLOAD_PATTERNS",
    "WEIGHTS_NAME",
    "WEIGHTS_PREFIX",
    "HubUnreachableError",
    "ModelSource",
    "PushToHubMixin",
    "WeightFiles",
    "available_models",
    "bundled_model_dir",
    "bundled_model_name",
    "bundled_models_root",
    "check_repo_id",
    "find_model_folder",
    "find_weights",
    "is_model_folder",
    "is_repo_id",
    "model_card",
    "push_folder",
    "push_pretrained",
    "read_evaluation_report",
    "read_training_config",
    "resolve_model_folder",
    "resolve_model_name",
    "weight_set",
    "write_model_card",
]
