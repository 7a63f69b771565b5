"""`ClevrEvaluator`: the i-CLEVR judge, with the official weights or the library's own."""

from __future__ import annotations

import importlib.resources
import logging
import math
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from ..constants import MAX_SHARD_BYTES
from ..model_folder.layout import weight_set
from ..model_folder.weights import load_weights, read_weights_metadata, save_weights
from ..models.resnet import ResNet18, maxpool_from_metadata
from ..models.serialization import load_safetensors, load_state_dict_strict, read_safetensors_metadata, save_safetensors
from .metrics import AccuracyResult, label_accuracy

__all__ = ["BUNDLED_PREFIX", "ClevrEvaluator", "bundled_weights_dir", "check_images"]

logger = logging.getLogger(__name__)

BUNDLED_PREFIX = "evaluator"
"""File prefix of the bundled weight shards."""
INPUT_SIZE = 64
INPUT_LIMIT = 1.1
"""Float images may reach this far past [-1, 1] (resampling overshoot); anything beyond is
another range, such as [0, 255]."""
_EXPECTED_WEIGHTS = (
    "expected the official evaluator's checkpoint.pth (a torch.save file, ClevrEvaluator.from_checkpoint) or "
    "weights from train-evaluator or ClevrEvaluator.save (a .safetensors file, ClevrEvaluator.from_file)"
)
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")
"""First bytes of torch.save files: its zip archive, or the legacy format's pickle."""
_WEIGHTS_ONLY_REFUSAL = "Weights only load failed"
"""How torch.load(weights_only=True) starts its error for a pickle with other objects."""


def check_images(images: Any) -> None:
    """Check evaluator input: (B, 3, H, W) uint8 (0-255), or any float dtype in about [-1, 1].

    A float tensor costs one pass (its min and max) and one host sync, once per call.

    Raises:
        ValueError: For another type, shape or dtype, NaN, or float values clearly outside
            [-1, 1] (beyond +-1.1); the message says how to convert.
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"expected images as a (B, 3, H, W) torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8 or images.numel() == 0:
        return
    if not images.is_floating_point():
        raise ValueError(
            f"images have dtype {images.dtype}; pass uint8 images in 0-255 or float images in [-1, 1]"
        )
    low, high = (float(v) for v in torch.stack(torch.aminmax(images.detach())).float().cpu())
    if math.isnan(low) or math.isnan(high):  # aminmax propagates NaN
        raise ValueError("images hold NaN; the evaluator needs finite images in [-1, 1] (or uint8 in 0-255)")
    if low < -INPUT_LIMIT or high > INPUT_LIMIT:
        raise ValueError(
            f"images range from {low:.4g} to {high:.4g}, but the evaluator expects float images in [-1, 1]: "
            "pass images * 2 - 1 for [0, 1] images, or uint8 images for 0-255 (e.g. images.round().to(torch.uint8))"
        )


def _weights_format(path: Path) -> str:
    """``"torch"``, ``"safetensors"``, ``"empty"`` or ``"unknown"``, from the first bytes of the file at ``path``."""
    with path.open("rb") as handle:
        head = handle.read(9)
    if not head:
        return "empty"
    if head.startswith(_TORCH_MAGIC):
        return "torch"
    # safetensors: an 8-byte little-endian header length, then the JSON header.
    return "safetensors" if head[8:9] == b"{" else "unknown"


def _not_weights(path: Path, why: str) -> ValueError:
    """The error for a file that is not evaluator weights."""
    return ValueError(f"{path} is not evaluator weights ({why}); {_EXPECTED_WEIGHTS}")


def bundled_weights_dir() -> Path:
    """Folder of the bundled evaluator weights inside the installed package."""
    return Path(str(importlib.resources.files("clevr_diffusion") / "resources" / "evaluator"))


class ClevrEvaluator(ResNet18):
    """ResNet-18 that judges which of the 24 objects an image shows.

    Its state-dict keys and shapes are the official evaluator's, so the course's
    ``checkpoint.pth`` loads strictly with `from_checkpoint`. ``ClevrEvaluator()`` loads the
    library's own weights (bundled in the package), trained on the built-in renderer's world
    with domain randomisation: its numbers are for rendered CLEVR scenes, not the official
    evaluator's, and are not comparable with published i-CLEVR results.

    Args:
        pretrained: Load the bundled weights; ``False`` leaves random ones.
        device: Device to move to.
        maxpool: With ``pretrained=False``, keep the stem's max pool (the official layout) or
            not (see `clevr_diffusion.models.resnet.ResNet18`). Loaded weights bring their
            own setting in their metadata.

    Attributes:
        kind: ``"bundled"``, ``"official"``, ``"file"`` or ``"random"``.
        uses_maxpool: Whether the stem's max pool runs (the official layout). The bundled
            weights run without it, for finer feature maps that tell small objects' shapes
            apart; the layout does not change the state dict.

    Call it on images (B, 3, 64, 64) in [-1, 1] (mean 0.5 / std 0.5 normalisation, as the
    official one expects) to get (B, 24) probabilities in [0, 1]; other sizes are resized
    (bilinear) with a warning. Any float dtype is cast to the weights' dtype; uint8 images
    (0-255) are mapped to [-1, 1]; float images clearly outside [-1, 1] (such as 0-255) are
    an error, while [0, 1] images cannot be told apart: pass ``images * 2 - 1``. It starts in
    eval mode.
    """

    def __init__(self, pretrained: bool = True, device: str | torch.device | None = None, maxpool: bool = True) -> None:
        state: dict[str, torch.Tensor] = {}
        if pretrained:
            folder = bundled_weights_dir()
            try:
                weights = weight_set(folder, BUNDLED_PREFIX)
                if weights is None:
                    raise FileNotFoundError(f"no {BUNDLED_PREFIX} weights in {folder}")
                state = load_weights(weights)
            except FileNotFoundError as error:
                raise FileNotFoundError(
                    f"the bundled evaluator weights are missing ({error}); reinstall clevr-diffusion, or "
                    "use ClevrEvaluator.from_checkpoint('checkpoint.pth') or ClevrEvaluator(pretrained=False)"
                ) from error
            maxpool = maxpool_from_metadata(read_weights_metadata(weights))
        super().__init__(num_classes=24, maxpool=maxpool)
        self.kind = "random"
        if pretrained:
            load_state_dict_strict(self, {k: v.float() for k, v in state.items()}, f"bundled weights in {folder}")
            self.kind = "bundled"
        self.eval()
        if device is not None:
            self.to(device)

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str] = "checkpoint.pth", device: str | torch.device = "cpu", trusted: bool = False
    ) -> ClevrEvaluator:
        """Load the official evaluator from the course's ``checkpoint.pth``.

        Args:
            path: A ``torch.save`` file holding ``{"model": state_dict, ...}`` (or a bare state dict).
            device: Device to load onto (the official code hard-codes CUDA; this works anywhere).
            trusted: Also unpickle objects other than tensors. Only for files you trust: a
                pickle can run code. Needed only if the file holds more than weights.

        Raises:
            FileNotFoundError: No file at ``path``.
            ValueError: The file is not a torch checkpoint (a text file, safetensors weights, a
                damaged file), or needs ``trusted=True``.
            CheckpointMismatchError: Its weights are not a ResNet-18 with a 24-way head.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no evaluator checkpoint at {path}; pass the path of the course's checkpoint.pth")
        kind = _weights_format(path)
        if kind == "safetensors":
            raise _not_weights(path, "it is a safetensors file, which ClevrEvaluator.from_file loads")
        if kind in ("empty", "unknown"):
            # torch.load would fail on it with whatever the unpickler stumbles on (KeyError: 101).
            raise _not_weights(path, "the file is empty" if kind == "empty" else "not a torch.save file")
        try:
            data = torch.load(path, map_location=device, weights_only=not trusted)
        except pickle.UnpicklingError as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            if trusted or not reason.startswith(_WEIGHTS_ONLY_REFUSAL):
                raise _not_weights(path, f"torch.load failed: {reason}") from error
            raise ValueError(
                f"{path} holds more than tensors and was not loaded ({reason}); if you trust "
                "the file, pass trusted=True (--trust-checkpoint on the command line)"
            ) from error
        except (RuntimeError, EOFError, KeyError, IndexError, ValueError) as error:
            # What the unpickler and the zip reader raise for a truncated or damaged file.
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no detail'}"
            raise _not_weights(path, f"torch.load failed: {reason}") from error
        state = data.get("model", data.get("state_dict", data)) if isinstance(data, dict) else None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{path} has no state dict under 'model'; expected torch.save({{'model': model.state_dict()}})")
        evaluator = cls(pretrained=False)
        # Some checkpoints come from nn.DataParallel: strip its "module." prefix.
        if state and all(k.startswith("module.") for k in state):
            state = {k[len("module.") :]: v for k, v in state.items()}
        load_state_dict_strict(evaluator, {k: v.float() for k, v in state.items()}, str(path))
        evaluator.kind = "official"
        return evaluator.to(device).eval()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> ClevrEvaluator:
        """Load weights saved by `save` or ``clevr-diffusion train-evaluator`` (safetensors),
        in the layout their metadata records.

        Raises:
            FileNotFoundError: No file at ``path``.
            ValueError: The file is not safetensors weights (the official ``checkpoint.pth``
                loads with `from_checkpoint`).
            CheckpointMismatchError: Its weights are not a ResNet-18 with a 24-way head.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no evaluator weights at {path}; {_EXPECTED_WEIGHTS}")
        if _weights_format(path) == "torch":
            raise _not_weights(path, "it is a torch.save file, which ClevrEvaluator.from_checkpoint loads")
        try:
            metadata = read_safetensors_metadata(path)
        except ValueError as error:
            raise _not_weights(path, f"not a readable safetensors file: {error.__cause__ or error}") from error
        evaluator = cls(pretrained=False, maxpool=maxpool_from_metadata(metadata))
        load_state_dict_strict(evaluator, {k: v.float() for k, v in load_safetensors(path).items()}, str(path))
        evaluator.kind = "file"
        return evaluator.to(device).eval()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the weights as one float32 safetensors file, atomically."""
        return save_safetensors(self.state_dict(), path, self.weights_metadata())

    def save_bundle(self, folder: str | os.PathLike[str], max_bytes: int = MAX_SHARD_BYTES) -> list[Path]:
        """Write the weights in float16 as they ship in the package: ``evaluator.safetensors``, or
        shards of at most ``max_bytes`` with their index (the Hugging Face layout) when larger.

        Returns:
            The files written, shards first.
        """
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in self.state_dict().items()}
        return save_weights(state, folder, BUNDLED_PREFIX, max_shard_bytes=max_bytes, metadata=self.weights_metadata())

    def _warn_resize(self, images: torch.Tensor) -> None:
        """Log, once per evaluator and image size, that ``images`` are not 64 x 64 and will be resized."""
        size = tuple(images.shape[-2:])
        # A log line, not a `UserWarning`: it reports what happens, there is no source line to point at.
        logged: set[tuple[int, ...]] = self.__dict__.setdefault("_resizes_logged", set())
        if size != (INPUT_SIZE, INPUT_SIZE) and size not in logged:
            logged.add(size)
            logger.warning("the evaluator expects 64 x 64 images; resizing %s x %s ones (bilinear)", size[0], size[1])

    def _as_input(self, images: torch.Tensor) -> torch.Tensor:
        """Checked images -> the network's input: [-1, 1] in the weights' dtype, 64 x 64."""
        dtype = next(self.parameters()).dtype
        # uint8 maps to [-1, 1] exactly as 8-bit PNGs do when scored (x / 127.5 - 1).
        x = images.to(dtype) / 127.5 - 1 if images.dtype == torch.uint8 else images.to(dtype)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = torch.nn.functional.interpolate(
                x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False
            )
        return x

    def _probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Checked images -> (B, 24) probabilities."""
        return self.fc[1](super().logits(self._as_input(images)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 24) scores before the sigmoid, for images as `forward` takes them."""
        check_images(x)
        self._warn_resize(x)
        return super().logits(self._as_input(x))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [-1, 1] (any float dtype) or uint8 in 0-255 -> (B, 24) probabilities in [0, 1].

        Raises:
            ValueError: For images of another shape, dtype or range (see `check_images`).
        """
        check_images(images)
        self._warn_resize(images)
        return self._probabilities(images)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Probabilities (B, 24) for images (B, 3, H, W) in [-1, 1] (any float dtype) or uint8 in
        0-255, in eval mode, in batches.

        Raises:
            ValueError: For images of another shape, dtype or range (see `check_images`).
        """
        check_images(images)  # once for the whole input, not per batch
        self._warn_resize(images)
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        out = []
        try:
            for i in range(0, images.shape[0], batch_size):
                # Batches travel in their own dtype (uint8: a quarter of float32) and convert on the device.
                out.append(self._probabilities(images[i : i + batch_size].to(device)))
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, 24)

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> AccuracyResult:
        """The official label-level accuracy (and image-level views) of ``images`` against
        multi-hot ``labels`` (B, 24); see `label_accuracy`. ``images`` as `predict` takes them.

        Raises:
            ValueError: For images of another shape, dtype or range (see `check_images`).
        """
        return label_accuracy(self.predict(images), labels)
