"""Networks: the conditional UNet and its building blocks (no noise process, no training)."""

from .attention import SelfAttention
from .blocks import Downsample, ResBlock, Upsample
from .config import UNetConfig
from .embeddings import LabelEmbedding, SinusoidalTimeEmbedding, TimestepEmbedding
from .normalization import AdaptiveGroupNorm
from .serialization import CheckpointMismatchError
from .unet import ConditionalUNet

__all__ = [
    "AdaptiveGroupNorm",
    "CheckpointMismatchError",
    "ConditionalUNet",
    "Downsample",
    "LabelEmbedding",
    "ResBlock",
    "SelfAttention",
    "SinusoidalTimeEmbedding",
    "TimestepEmbedding",
    "UNetConfig",
    "Upsample",
]
