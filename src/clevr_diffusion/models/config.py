"""Configuration of `ConditionalUNet`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        num_heads: Attention heads, self- and cross-attention (must divide the channels of every
            stage that has either).
        time_embed_dim: Width of the time and label embeddings and of the object tokens
            (``None``: 4 x base).
        norm_groups: GroupNorm groups (must divide every stage's channels).
        dropout: Dropout probability inside residual blocks.
        sample_size: Image side the model was built for (informative; any multiple of the
            downsampling factor works).
        label_vector: Condition on the multi-hot vector's MLP embedding, concatenated with the
            time embedding into the vector ``cond`` that every AdaGN and ResBlock reads
            (width ``2 * embed_dim``). ``False``: ``cond`` is the time embedding alone (width
            ``embed_dim``) and the labels reach the network only through cross-attention.
        cross_attention_stages: Indices of the stages (0 = highest resolution, as in
            ``attention_stages``) where every residual block, encoder and decoder, is followed
            (after its self-attention, if any) by cross-attention from the feature map to the
            object tokens: one learned ``embed_dim`` token per present object plus a learned
            null token (see `ObjectTokens`).
        cross_attention_bottleneck: Whether the bottleneck also has cross-attention to the
            object tokens, after its self-attention.
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
    label_vector: bool = True
    cross_attention_stages: tuple[int, ...] = ()
    cross_attention_bottleneck: bool = False

    def __post_init__(self) -> None:
        if not self.channel_mults:
            raise ValueError("channel_mults needs at least one stage")
        if self.blocks_per_stage < 1 or self.decoder_blocks_per_stage < 1:
            raise ValueError("blocks_per_stage and decoder_blocks_per_stage must be >= 1")
        for name in ("attention_stages", "cross_attention_stages"):
            for stage in getattr(self, name):
                if not 0 <= stage < len(self.channel_mults):
                    raise ValueError(
                        f"{name} holds {stage}, but there are only "
                        f"{len(self.channel_mults)} stages (0..{len(self.channel_mults) - 1})"
                    )
        if not self.label_vector and not self.uses_object_tokens:
            raise ValueError(
                "label_vector=False with no cross-attention leaves the model blind to the labels; "
                "set label_vector=True or name cross_attention_stages (or cross_attention_bottleneck=True)"
            )
        for channels in self.stage_channels:
            if channels % self.norm_groups:
                raise ValueError(f"norm_groups={self.norm_groups} does not divide {channels} channels")
            if channels % self.num_heads and self._has_attention(channels):
                raise ValueError(f"num_heads={self.num_heads} does not divide {channels} channels")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def _has_attention(self, channels: int) -> bool:
        stages = {*self.attention_stages, *self.cross_attention_stages}
        attention_channels = {self.stage_channels[i] for i in stages}
        if self.bottleneck_attention or self.cross_attention_bottleneck:
            attention_channels.add(self.stage_channels[-1])
        return channels in attention_channels

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields; the object-token settings only when not default.

        Leaving them out at their defaults keeps ``config.json`` of a vector-conditioned model
        byte-identical to what earlier versions wrote, and readable by them; `from_dict`
        restores the defaults.
        """
        data = super().to_dict()
        for name, default in _OPTIONAL_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        return data

    @property
    def uses_object_tokens(self) -> bool:
        """Whether any layer cross-attends to the object tokens."""
        return bool(self.cross_attention_stages) or self.cross_attention_bottleneck

    @property
    def cond_dim(self) -> int:
        """Width of the conditioning vector of the AdaGNs and ResBlocks: time (+ label) embedding."""
        return 2 * self.embed_dim if self.label_vector else self.embed_dim

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


_OPTIONAL_DEFAULTS: dict[str, Any] = {"label_vector": True, "cross_attention_stages": [], "cross_attention_bottleneck": False}
"""`UNetConfig` fields added after the first release, with the (JSON) values left out of files."""
