"""ResNet-18 with the official i-CLEVR evaluator's layout, written without torchvision.

The module tree, and so the state-dict keys and shapes, equal torchvision's ``resnet18`` with
``fc = Sequential(Linear(512, 24), Sigmoid())`` (``shared/reference/resnet18_keys.json``), so
the official ``checkpoint.pth`` loads strictly.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ResNet18", "maxpool_from_metadata"]

_MAXPOOL_KEY = "maxpool"


def maxpool_from_metadata(metadata: dict[str, str]) -> bool:
    """Whether weights whose safetensors metadata is ``metadata`` were trained with the stem's
    max pool (`ResNet18.weights_metadata` wrote it; weights without the entry have it)."""
    value = metadata.get(_MAXPOOL_KEY, "true")
    if value not in ("true", "false"):
        raise ValueError(f"weights metadata has {_MAXPOOL_KEY}={value!r}; expected 'true' or 'false'")
    return value == "true"


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection (torchvision's BasicBlock)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 mapping images to per-object probabilities.

    Args:
        num_classes: Outputs of the final ``Linear`` (24 objects).
        maxpool: Keep the stem's 3 x 3 max pool (the official layout). Without it every later
            feature map is twice as fine (for 64 x 64 images, 32 x 32 into ``layer1`` and
            4 x 4 out of ``layer4`` instead of 16 x 16 and 2 x 2) for about 3x the compute, so
            small, distant objects a few pixels wide keep their shape. The pool has no weights:
            the state dict is the same either way.

    ``forward(x)``: x (B, 3, H, W) normalised images (the evaluator's are in [-1, 1]); returns
    (B, num_classes) sigmoid probabilities in [0, 1]. ``logits(x)`` returns them before the sigmoid.
    """

    def __init__(self, num_classes: int = 24, maxpool: bool = True) -> None:
        super().__init__()
        self.uses_maxpool = maxpool
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = nn.MaxPool2d(3, 2, 1) if maxpool else nn.Identity()
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(512, num_classes), nn.Sigmoid())
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for block in self.modules():
            # Zero-initialised last norm of each residual branch: every block starts as identity.
            if isinstance(block, BasicBlock):
                nn.init.zeros_(block.bn2.weight)

    def weights_metadata(self) -> dict[str, str]:
        """Safetensors metadata that records the layout the weights need (see `maxpool_from_metadata`)."""
        return {"format": "pt", _MAXPOOL_KEY: "true" if self.uses_maxpool else "false"}

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, num_classes) scores before the sigmoid."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc[0](torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc[1](self.logits(x))
