"""From what a user names (a bundled model, a folder, a Hub repo id) to a local model folder.

`resolve_model_folder` is the one way in: `ConditionalUNet.from_pretrained`,
`DDPMSampler.from_pretrained`, `evaluate` and the command's ``--model`` all call it. Hub repos go
through ``huggingface_hub``'s cache (``HF_HOME``, or ``cache_dir``), so a repo pulled once loads
again offline (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``); ``HF_ENDPOINT`` selects
another Hub-compatible server, ``HF_TOKEN`` (or ``hf auth login``) the account.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .bundled import bundled_model_dir, bundled_model_name, has_separator, unknown_model_error
from .layout import UPLOAD_PATTERNS

__all__ = [
    "HubUnreachableError",
    "ModelSource",
    "check_repo_id",
    "connection_errors",
    "is_repo_id",
    "resolve_model_folder",
    "resolve_model_name",
]

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")


class HubUnreachableError(ConnectionError):
    """The Hugging Face Hub (``HF_ENDPOINT``) could not be reached: no network, a wrong endpoint, a timeout."""

    @classmethod
    def from_error(cls, error: BaseException) -> HubUnreachableError:
        """The error for a failed connection, naming the endpoint, the reason and what to check."""
        from huggingface_hub import constants

        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return cls(
            f"the Hugging Face Hub at {constants.ENDPOINT} could not be reached ({reason}); check the network "
            "connection, or HF_ENDPOINT (the server) and HF_TOKEN (the account)"
        )


def connection_errors() -> tuple[type[BaseException], ...]:
    """The exception types of a failed connection to the Hub, whichever HTTP client huggingface_hub uses.

    Only clients already imported can have raised anything, so none is imported here. HTTP
    status errors (a refused token, a missing repo) are not among them: the server answered.
    """
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]  # incl. OfflineModeIsEnabled
    for client in ("httpx2", "httpx"):
        if client in sys.modules:
            errors.append(sys.modules[client].TransportError)  # connect, read, timeout, proxy, protocol
    if "requests" in sys.modules:  # huggingface_hub before 1.0
        exceptions = sys.modules["requests"].exceptions
        errors += [exceptions.ConnectionError, exceptions.Timeout]
    return tuple(errors)


def is_repo_id(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` should be read as a Hub repo id (``"user/name"``) rather than a folder.

    An existing local path is always a folder; otherwise a string of the form
    ``namespace/name`` (letters, digits, ``-``, ``_``, ``.``; no ``..``) is a repo id.
    """
    text = os.fspath(name)
    if Path(text).exists():
        return False
    return bool(_REPO_ID.match(text)) and ".." not in text and not text.endswith((".json", ".safetensors"))


def check_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` if it has the form ``namespace/name``.

    Raises:
        ValueError: Otherwise, with the expected form.
    """
    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise ValueError(f"{repo_id!r} is not a Hub repo id; use the form 'user/name' or 'organization/name'")
    return repo_id


@dataclass(frozen=True)
class ModelSource:
    """A resolved model folder, and where it came from for error messages.

    Attributes:
        folder: The local folder (a snapshot in the Hub cache for a repo).
        repo_id: The repo id, or ``None`` for a local or bundled folder.
        revision: The revision asked for (``None``: the default branch).
    """

    folder: Path
    repo_id: str | None = None
    revision: str | None = None

    def describe(self, filename: str | None = None) -> str:
        """``"the Hub repo 'u/n' (revision main)"`` or the folder, optionally with a file in it."""
        if self.repo_id is None:
            return str(self.folder / filename) if filename else str(self.folder)
        where = f"the Hub repo {self.repo_id!r} (revision {self.revision or 'main'})"
        return f"{filename} of {where}" if filename else where

    def require(self, filename: str, hint: str = "") -> Path:
        """The path of ``filename`` in the folder.

        Raises:
            FileNotFoundError: If it is missing; the message names the repo or folder.
        """
        path = self.folder / filename
        if not path.is_file():
            raise self.missing(filename, hint)
        return path

    def missing(self, filename: str, hint: str = "") -> FileNotFoundError:
        """The error for ``filename`` missing from the folder, naming the repo or folder."""
        if self.repo_id is not None:
            return FileNotFoundError(
                f"{self.describe()} has no {filename}: it was not pushed with "
                "`clevr-diffusion push` or `push_to_hub`, or this revision predates it" + hint
            )
        return FileNotFoundError(f"{self.folder} holds no {filename}" + hint)


def resolve_model_name(name_or_path: str | os.PathLike[str] | None) -> str | os.PathLike[str]:
    """A bundled model's folder, or the argument unchanged (a folder, a repo id).

    Precedence: ``None`` -> the default bundled model; an existing local folder -> itself; a
    bundled model's name -> its folder in the package; anything else with a path separator
    (a Hub repo id, a missing folder) is returned as it is.

    Raises:
        FileNotFoundError: If the argument names a known model this installation does not bundle,
            or is a bare name (no path separator) that is neither a local folder nor a bundled
            model, e.g. a misspelt model name; the message suggests the closest bundled name.
    """
    name = bundled_model_name(name_or_path)
    if name is not None:
        return bundled_model_dir(name)
    assert name_or_path is not None  # None always names the default model
    text = os.fspath(name_or_path)
    if text and not has_separator(text) and not Path(text).exists():
        # Not a folder, and without a '/' not a Hub repo id either: a bundled name, misspelt.
        raise unknown_model_error(text, folder=True)
    return name_or_path


def resolve_model_folder(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> ModelSource:
    """The local model folder that ``name_or_path`` names, downloading a Hub repo if needed.

    Read in this order: ``None`` is the default bundled model; an existing local folder is
    itself; a bundled model's name (``"clevr-ddpm-small"``) is its folder in the package;
    anything else of the form ``user/name`` is a Hub repo id, whose model files (``*.json``,
    ``*.safetensors``, the card) are downloaded or found in the cache. The folder is not
    checked to hold a model: the loaders say what is missing.

    Args:
        name_or_path: ``None``, a bundled model's name, a folder, or a repo id such as
            ``"user/clevr-ddpm"``.
        revision: Branch, tag or commit id of the repo (default: its main branch).
        token: Hub token for private repos (default: ``HF_TOKEN`` or the saved login).
        cache_dir: Download cache (default: the ``huggingface_hub`` cache under ``HF_HOME``).
        local_files_only: Use the cache only, never the network.
        force_download: Download again even if cached (e.g. after a damaged download).

    Raises:
        FileNotFoundError: For a bare name that is neither a folder nor a bundled model (or a
            known model not bundled here); a repo that does not exist (or is private and no
            token was given), or is not cached while offline.
        ValueError: If the repo has no such revision.
        HubUnreachableError: If the connection fails during the download.
    """
    name_or_path = resolve_model_name(name_or_path)
    if not is_repo_id(name_or_path):
        return ModelSource(Path(name_or_path))
    return _download(os.fspath(name_or_path), revision, token, cache_dir, local_files_only, force_download)


def _download(
    repo_id: str,
    revision: str | None,
    token: str | bool | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
    force_download: bool,
) -> ModelSource:
    """The snapshot of a Hub repo's model files in the local cache, with errors in plain words."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            force_download=force_download,
            allow_patterns=list(UPLOAD_PATTERNS),
        )
    except RevisionNotFoundError as error:
        raise ValueError(
            f"the Hub repo {repo_id!r} has no revision {revision!r}: give an existing branch, tag or commit id "
            "(or none for the main branch)"
        ) from error
    except GatedRepoError as error:
        raise FileNotFoundError(f"the Hub repo {repo_id!r} is gated: accept its conditions and pass a token") from error
    except RepositoryNotFoundError as error:
        raise FileNotFoundError(
            f"no local folder {repo_id!r} and no model repo {repo_id!r} on the Hugging Face Hub; check the name, "
            "or, for a private repo, pass token=... (CLI: --token) or log in with `hf auth login`"
        ) from error
    except LocalEntryNotFoundError as error:
        raise FileNotFoundError(
            f"no local folder {repo_id!r}, and the Hub repo {repo_id!r} (revision {revision or 'main'}) is not in "
            "the local cache and cannot be downloaded now (offline: HF_HUB_OFFLINE=1, local_files_only=True, or "
            "no connection); download it once while online, or pass the path of a local model folder"
        ) from error
    except connection_errors() as error:
        raise HubUnreachableError.from_error(error) from error
    return ModelSource(Path(folder), repo_id, revision)
