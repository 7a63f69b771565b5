"""Networks: the conditional UNet and its building blocks, and the evaluator's ResNet-18 (no noise
process, no training, no evaluation)."""

from .attention import CrossAttention, SelfAttention
from .blocks import Downsample, ResBlock, Upsample
from .config import UNetConfig
from .embeddings import LabelEmbedding, ObjectTokens, SinusoidalTimeEmbedding, TimestepEmbedding
from .normalization import AdaptiveGroupNorm
from .resnet import ResNet18
from .serialization import CheckpointMismatchError
from .unet import ConditionalUNet

__all__ = [
    "AdaptiveGroupNorm",
    "CheckpointMismatchError",
    "ConditionalUNet",
    "CrossAttention",
    "Downsample",
    "LabelEmbedding",
    "ObjectTokens",
    "ResBlock",
    "ResNet18",
    "SelfAttention",
    "SinusoidalTimeEmbedding",
    "TimestepEmbedding",
    "UNetConfig",
    "Upsample",
]
