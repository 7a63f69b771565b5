"""Uploading a model folder to the Hugging Face Hub as one commit, with its model card."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from .card import is_hand_written, model_card
from .layout import MODEL_CARD_NAME, UPLOAD_PATTERNS, find_model_folder
from .resolve import HubUnreachableError, check_repo_id, connection_errors

__all__ = ["PushToHubMixin", "push_folder", "push_pretrained"]


def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    card_extras: dict[str, Any] | None = None,
) -> str:
    """Upload a model folder (``*.json``, ``*.safetensors`` and the model card) as one commit.

    The repo is created if missing, and so is the branch ``revision``. A model card is
    generated unless the folder has a hand-written ``README.md`` (one without the marker line
    of a generated card).

    Args:
        folder: A folder written by ``save_pretrained``, ``RUN/model`` of a training run, or
            the run folder ``RUN`` (its ``model/`` is pushed).
        repo_id: ``"user/name"`` or ``"organization/name"``.
        private: Create the repo private (an existing repo keeps its visibility).
        token: Hub token with write access (default: ``HF_TOKEN`` or the saved login).
        revision: Branch to push to (default: the main branch).
        commit_message: Commit summary.
        create_pr: Open a pull request instead of committing to the branch.
        card_extras: Passed to `model_card` (``training`` and ``evaluation`` sections).

    Returns:
        The URL of the commit (or pull request).

    Raises:
        FileNotFoundError: If ``folder`` is not a model folder.
        HubUnreachableError: If the Hub cannot be reached.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = find_model_folder(folder)
    check_repo_id(repo_id)
    card = folder / MODEL_CARD_NAME
    if is_hand_written(card):
        card_text = card.read_text(encoding="utf-8")
    else:
        card_text = model_card(folder, repo_id=repo_id, **(card_extras or {}))
    patterns = [p for p in UPLOAD_PATTERNS if p != MODEL_CARD_NAME]
    files = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})
    operations = [CommitOperationAdd(path_in_repo=p.name, path_or_fileobj=str(p)) for p in files]
    operations.append(CommitOperationAdd(path_in_repo=MODEL_CARD_NAME, path_or_fileobj=card_text.encode("utf-8")))

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        info = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or "Upload clevr-diffusion model",
            revision=revision,
            create_pr=create_pr,
            repo_type="model",
        )
    except connection_errors() as error:
        raise HubUnreachableError.from_error(error) from error
    return str(info.pr_url or info.commit_url)


def push_pretrained(obj: Any, repo_id: str, *, ema_state_dict: Any = None, **kwargs: Any) -> str:
    """Save ``obj`` (a `ConditionalUNet` or `DDPMSampler`) to a temporary folder and `push_folder` it."""
    with tempfile.TemporaryDirectory(prefix="clevr-diffusion-push-") as tmp:
        obj.save_pretrained(tmp, ema_state_dict=ema_state_dict)
        return push_folder(tmp, repo_id, **kwargs)


class PushToHubMixin:
    """Adds `push_to_hub` to a class with ``save_pretrained(folder, ema_state_dict=None)``."""

    def push_to_hub(
        self,
        repo_id: str,
        *,
        ema_state_dict: dict[str, Any] | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        commit_message: str | None = None,
        create_pr: bool = False,
    ) -> str:
        """Upload what `save_pretrained` writes (with a model card) to a Hugging Face Hub repo, as one commit.

        ``from_pretrained(repo_id)`` loads it back.

        Args:
            repo_id: ``"user/name"`` or ``"organization/name"``; the repo is created if missing.
            ema_state_dict: EMA weights to upload beside the model's own.
            private: Create the repo private (an existing repo keeps its visibility).
            token: Hub token with write access (default: ``HF_TOKEN`` or the saved login).
            revision: Branch to push to (created if missing; default: main).
            commit_message: Commit summary.
            create_pr: Open a pull request instead of committing.

        Returns:
            The URL of the commit (or pull request).
        """
        return push_pretrained(
            self,
            repo_id,
            ema_state_dict=ema_state_dict,
            private=private,
            token=token,
            revision=revision,
            commit_message=commit_message,
            create_pr=create_pr,
        )

