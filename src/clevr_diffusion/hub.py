"""Sharing models on the Hugging Face Hub: pull a model folder by repo id, push one, write its card.

The names here are the Hub-facing part of `clevr_diffusion.model_folder`, which implements
them (the one module that knows what a model folder holds and where one comes from).
Downloads go through ``huggingface_hub``'s cache (``HF_HOME``, or ``cache_dir``), so a repo
pulled once loads again offline (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``).
``HF_ENDPOINT`` selects another Hub-compatible server, ``HF_TOKEN`` (or ``hf auth login``) the
account. `ConditionalUNet` and `DDPMSampler` get ``from_pretrained`` and ``push_to_hub`` from the
same functions.
"""

from __future__ import annotations

from .model_folder.card import CARD_MARKER, model_card, write_model_card
from .model_folder.layout import MODEL_CARD_NAME
from .model_folder.publish import PushToHubMixin, push_folder, push_pretrained
from .model_folder.resolve import HubUnreachableError, ModelSource, check_repo_id, is_repo_id, resolve_model_folder

__all__ = [
    "CARD_MARKER",
    "MODEL_CARD_NAME",
    "HubUnreachableError",
    "ModelSource",
    "PushToHubMixin",
    "check_repo_id",
    "is_repo_id",
    "model_card",
    "push_folder",
    "push_pretrained",
    "resolve_model_folder",
    "write_model_card",
]
