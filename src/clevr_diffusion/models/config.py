"""Configuration of `ConditionalUNet`."""

from __future__ import annotations

from dataclasses import dataclass

from ..utils.config import JsonConfig

__all__ = ["UNetConfig"]


@dataclass
class UNetConfig(JsonConfig):
    """Every constructor argument of `ConditionalUNet`; stored as ``config.json``.

    The defaults are the lab report's network: base 32 channels, encoder stages 32/64/128/256
    with 2 residual blocks each and attention at the 128-channel stage, a ResBlock-Attention-
    ResBlock bottleneck at 256 channels and a mirrored decoder with skip concatenation.

    Attributes:
        in_channels: Image channels in.
        out_channels: Channels out (the noise or velocity prediction).
        num_labels: Length of the multi-hot label vector.
        base_channels: Channels of the first stage.
        channel_mults: Per-stage multiples of ``base_channels``; ``len - 1`` downsamplings.
        blocks_per_stage: Residual blocks per encoder stage.
        decoder_blocks_per_stage: Residual blocks per decoder stage (the first fuses the skip).
        attention_stages: Indices of the stages (0 = highest resolution) with self-attention.
        bottleneck_attention: Whether the bottleneck has attention between its two ResBlocks.
        num_heads: Attention heads.
        time_embed_dim: Width of the time and label embeddings (``None``: 4 x base).
        norm_groups: GroupNorm groups (must divide every stage's channels).
        dropout: Dropout probability inside residual blocks.
        sample_size: Image side the model was built for (informative; any multiple of the
            downsampling factor works).
    """

    in_channels: int = 3
    out_channels: int = 3
    num_labels: int = 24
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4, 8)
    blocks_per_stage: int = 2
    decoder_blocks_per_stage: int = 1
    attention_stages: tuple[int, ...] = (2,)
    bottleneck_attention: bool = True
    num_heads: int = 4
    time_embed_dim: int | None = None
    norm_groups: int = 8
    dropout: float = 0.1
    sample_size: int = 64

    def __post_init__(self) -> None:
        if not self.channel_mults:
            raise ValueError("channel_mults needs at least one stage")
        if self.blocks_per_stage < 1 or self.decoder_blocks_per_stage < 1:
            raise ValueError("blocks_per_stage and decoder_blocks_per_stage must be >= 1")
        for stage in self.attention_stages:
            if not 0 <= stage < len(self.channel_mults):
                raise ValueError(
                    f"attention_stages holds {stage}, but there are only "
                    f"{len(self.channel_mults)} stages (0..{len(self.channel_mults) - 1})"
                )
        for channels in self.stage_channels:
            if channels % self.norm_groups:
                raise ValueError(f"norm_groups={self.norm_groups} does not divide {channels} channels")
            if channels % self.num_heads and self._has_attention(channels):
                raise ValueError(f"num_heads={self.num_heads} does not divide {channels} channels")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def _has_attention(self, channels: int) -> bool:
        attention_channels = {self.stage_channels[i] for i in self.attention_stages}
        if self.bottleneck_attention:
            attention_channels.add(self.stage_channels[-1])
        return channels in attention_channels

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """Channels of each stage, highest resolution first."""
        return tuple(self.base_channels * m for m in self.channel_mults)

    @property
    def embed_dim(self) -> int:
        """Width of the time and label embeddings."""
        return self.time_embed_dim or 4 * self.base_channels

    @property
    def downsampling_factor(self) -> int:
        """Total downsampling: image sides must be multiples of this."""
        return 2 ** (len(self.channel_mults) - 1)
