"""`ClevrEvaluator`: the i-CLEVR judge, with the official weights or the library's own."""

from __future__ import annotations

import importlib.resources
import os
import pickle
import warnings
from pathlib import Path

import torch

from ..models.serialization import (
    load_safetensors,
    load_sharded_safetensors,
    load_state_dict_strict,
    read_safetensors_metadata,
    read_sharded_metadata,
    save_safetensors,
    save_sharded_safetensors,
)
from .metrics import AccuracyResult, label_accuracy
from .resnet import ResNet18, maxpool_from_metadata

__all__ = ["BUNDLED_PREFIX", "ClevrEvaluator", "bundled_weights_dir"]

BUNDLED_PREFIX = "evaluator"
"""File prefix of the bundled weight shards."""
INPUT_SIZE = 64


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
            not (see `clevr_diffusion.evaluation.resnet.ResNet18`). Loaded weights bring their
            own setting in their metadata.

    Attributes:
        kind: ``"bundled"``, ``"official"``, ``"file"`` or ``"random"``.
        uses_maxpool: Whether the stem's max pool runs (the official layout). The bundled
            weights run without it, for finer feature maps that tell small objects' shapes
            apart; the layout does not change the state dict.

    Call it on images (B, 3, 64, 64) in [-1, 1] (mean 0.5 / std 0.5 normalisation, as the
    official one expects) to get (B, 24) probabilities in [0, 1]; other sizes are resized
    (bilinear) with a warning. It starts in eval mode.
    """

    def __init__(self, pretrained: bool = True, device: str | torch.device | None = None, maxpool: bool = True) -> None:
        state: dict[str, torch.Tensor] = {}
        if pretrained:
            folder = bundled_weights_dir()
            try:
                state = load_sharded_safetensors(folder, BUNDLED_PREFIX)
            except FileNotFoundError as error:
                raise FileNotFoundError(
                    f"the bundled evaluator weights are missing ({error}); reinstall clevr-diffusion, or "
                    "use ClevrEvaluator.from_checkpoint('checkpoint.pth') or ClevrEvaluator(pretrained=False)"
                ) from error
            maxpool = maxpool_from_metadata(read_sharded_metadata(folder, BUNDLED_PREFIX))
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
            ValueError: The file is not a checkpoint, or needs ``trusted=True``.
            CheckpointMismatchError: Its weights are not a ResNet-18 with a 24-way head.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no evaluator checkpoint at {path}; pass the path of the course's checkpoint.pth")
        try:
            data = torch.load(path, map_location=device, weights_only=not trusted)
        except pickle.UnpicklingError as error:
            raise ValueError(
                f"{path} holds more than tensors and was not loaded ({str(error).splitlines()[0]}); if you trust "
                "the file, pass trusted=True (--trust-checkpoint on the command line)"
            ) from error
        except (RuntimeError, EOFError) as error:
            raise ValueError(f"{path} is not a readable torch checkpoint ({error})") from error
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
        in the layout their metadata records."""
        evaluator = cls(pretrained=False, maxpool=maxpool_from_metadata(read_safetensors_metadata(path)))
        load_state_dict_strict(evaluator, {k: v.float() for k, v in load_safetensors(path).items()}, str(path))
        evaluator.kind = "file"
        return evaluator.to(device).eval()

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the weights as one float32 safetensors file, atomically."""
        return save_safetensors(self.state_dict(), path, self.weights_metadata())

    def save_bundle(self, folder: str | os.PathLike[str], max_bytes: int = 15 * 2**20) -> list[Path]:
        """Write the weights as float16 shards of at most ``max_bytes`` (how they ship in the package)."""
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in self.state_dict().items()}
        return save_sharded_safetensors(state, folder, BUNDLED_PREFIX, max_bytes, self.weights_metadata())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [-1, 1] -> (B, 24) probabilities in [0, 1]."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            warnings.warn(
                f"the evaluator expects 64 x 64 images; resizing {tuple(images.shape[-2:])} with bilinear interpolation",
                stacklevel=4,  # past nn.Module's call machinery, to the caller of evaluator(images)
            )
            images = torch.nn.functional.interpolate(
                images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False
            )
        return super().forward(images)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Probabilities (B, 24) for images (B, 3, H, W) in [-1, 1], in eval mode, in batches."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        try:
            out = [self(images[i : i + batch_size].to(device)) for i in range(0, images.shape[0], batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, 24)

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> AccuracyResult:
        """The official label-level accuracy (and image-level views) of ``images`` against
        multi-hot ``labels`` (B, 24); see `label_accuracy`."""
        return label_accuracy(self.predict(images), labels)
