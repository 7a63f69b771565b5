"""The label-conditioned UNet that predicts the noise (or velocity) of a noisy image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..model_folder import (
    CONFIG_NAME,
    EMA_PREFIX,
    WEIGHTS_NAME,
    WEIGHTS_PREFIX,
    ModelSource,
    PushToHubMixin,
    find_weights,
    resolve_model_folder,
    write_model_card,
)
from ..model_folder.weights import load_weights, save_weights
from .attention import CrossAttention, SelfAttention
from .blocks import Downsample, ResBlock, Upsample
from .config import UNetConfig
from .embeddings import LabelEmbedding, ObjectTokens, TimestepEmbedding
from .normalization import AdaptiveGroupNorm
from .serialization import load_state_dict_strict

__all__ = ["ConditionalUNet"]


class _Stage(nn.Module):
    """Residual blocks at one resolution, each optionally followed by self-attention and then
    cross-attention to the object tokens (built only when asked for, so a stage without it has
    the state-dict keys it always had)."""

    def __init__(
        self,
        channels_in: int,
        channels: int,
        num_blocks: int,
        attention: bool,
        cfg: UNetConfig,
        cross_attention: bool = False,
    ) -> None:
        super().__init__()
        cond_dim = cfg.cond_dim
        self.blocks = nn.ModuleList(
            ResBlock(channels_in if i == 0 else channels, channels, cond_dim, cfg.norm_groups, cfg.dropout)
            for i in range(num_blocks)
        )
        self.attentions = nn.ModuleList(
            SelfAttention(channels, cfg.num_heads, cfg.norm_groups) if attention else nn.Identity()
            for _ in range(num_blocks)
        )
        self.cross_attentions: nn.ModuleList | None = None
        if cross_attention:
            self.cross_attentions = nn.ModuleList(
                CrossAttention(channels, cfg.embed_dim, cfg.num_heads, cfg.norm_groups) for _ in range(num_blocks)
            )

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        tokens: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Map ``x`` (B, C_in, H, W) to (B, C, H, W) under ``cond`` (B, cond_dim) and, with
        cross-attention, the (K, D) ``tokens`` and (B, K) bool ``mask`` of `ObjectTokens`."""
        for i, (block, attention) in enumerate(zip(self.blocks, self.attentions, strict=True)):
            x = attention(block(x, cond))
            if self.cross_attentions is not None:
                assert tokens is not None and mask is not None, "a cross-attention stage needs tokens and mask"
                x = self.cross_attentions[i](x, tokens, mask)
        return x


class ConditionalUNet(nn.Module, PushToHubMixin):
    """UNet denoiser conditioned on a timestep and a multi-hot object label.

    A network only: it maps ``(x_t, t, labels)`` to a prediction and knows nothing of the noise
    schedule, training or sampling. The labels condition it as one vector (an MLP embedding
    joined to the time embedding that modulates every residual block; the default), as a set
    of object tokens that chosen layers cross-attend to (`UNetConfig.cross_attention_stages`,
    ``cross_attention_bottleneck``), or both. Build it from keyword arguments (the fields of
    `UNetConfig`) or from a config object; ``model.config`` round-trips through
    ``config.json``.

    Args:
        config: A full configuration; keyword arguments override its fields.
        **kwargs: Fields of `UNetConfig`.

    Example:
        >>> model = ConditionalUNet(base_channels=16)
        >>> x = torch.randn(2, 3, 64, 64)
        >>> model(x, torch.tensor([10, 500]), torch.zeros(2, 24)).shape
        torch.Size([2, 3, 64, 64])
    """

    def __init__(self, config: UNetConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        cfg = (config or UNetConfig()).replace(**kwargs) if kwargs else (config or UNetConfig())
        self.config = cfg
        channels = cfg.stage_channels
        emb = cfg.embed_dim

        self.time_embedding = TimestepEmbedding(cfg.base_channels, emb)
        # Only the conditioning paths the config asks for are built: the default (label vector,
        # no cross-attention) has exactly the modules, keys and random initialisation it always had.
        self.label_embedding: LabelEmbedding | None = LabelEmbedding(cfg.num_labels, emb) if cfg.label_vector else None
        self.object_tokens: ObjectTokens | None = (
            ObjectTokens(cfg.num_labels, emb) if cfg.uses_object_tokens else None
        )
        self.input_conv = nn.Conv2d(cfg.in_channels, channels[0], kernel_size=3, padding=1)

        self.encoder = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        previous = channels[0]
        for i, ch in enumerate(channels):
            self.encoder.append(
                _Stage(
                    previous, ch, cfg.blocks_per_stage, i in cfg.attention_stages, cfg, i in cfg.cross_attention_stages
                )
            )
            last = i == len(channels) - 1
            self.downsamplers.append(nn.Identity() if last else Downsample(ch))
            previous = ch

        cond_dim = cfg.cond_dim
        self.mid_block1 = ResBlock(channels[-1], channels[-1], cond_dim, cfg.norm_groups, cfg.dropout)
        self.mid_attention: nn.Module = (
            SelfAttention(channels[-1], cfg.num_heads, cfg.norm_groups)
            if cfg.bottleneck_attention
            else nn.Identity()
        )
        self.mid_cross_attention: CrossAttention | None = (
            CrossAttention(channels[-1], emb, cfg.num_heads, cfg.norm_groups) if cfg.cross_attention_bottleneck else None
        )
        self.mid_block2 = ResBlock(channels[-1], channels[-1], cond_dim, cfg.norm_groups, cfg.dropout)

        # Decoder stage i fuses the previous stage's output with encoder stage i's skip.
        self.decoder = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        previous = channels[-1]
        for i in reversed(range(len(channels))):
            ch = channels[i]
            self.decoder.append(
                _Stage(
                    previous + ch,
                    ch,
                    cfg.decoder_blocks_per_stage,
                    i in cfg.attention_stages,
                    cfg,
                    i in cfg.cross_attention_stages,
                )
            )
            self.upsamplers.append(Upsample(ch) if i > 0 else nn.Identity())
            previous = ch

        self.output_norm = AdaptiveGroupNorm(channels[0], cond_dim, cfg.norm_groups)
        self.output_conv = nn.Conv2d(channels[0], cfg.out_channels, kernel_size=3, padding=1)
        self.act = nn.SiLU()

    @classmethod
    def from_config(cls, config: UNetConfig | dict[str, Any]) -> ConditionalUNet:
        """Build an untrained model from a `UNetConfig` or its dict form."""
        if isinstance(config, dict):
            config = UNetConfig.from_dict(config)
        return cls(config)

    def save_pretrained(
        self, folder: str | os.PathLike[str], ema_state_dict: dict[str, torch.Tensor] | None = None
    ) -> Path:
        """Write ``config.json``, ``model.safetensors``, ``model_ema.safetensors`` if given, and a
        model card (``README.md``; a hand-written one is kept).

        Every file is written atomically; ``config.json`` comes after the weights, so a folder
        that has one is complete. The weights are written by huggingface_hub's
        ``save_torch_state_dict``, so Hub tools read them too.

        Args:
            folder: Destination folder (created if missing).
            ema_state_dict: EMA weights to store beside the raw ones.

        Returns:
            The folder.
        """
        folder = Path(folder)
        meta = {"library": "clevr-diffusion"}  # huggingface_hub adds {"format": "pt"}
        save_weights(self.state_dict(), folder, WEIGHTS_PREFIX, metadata=meta)
        if ema_state_dict is not None:
            save_weights(ema_state_dict, folder, EMA_PREFIX, metadata=meta)
        self.config.save(folder / CONFIG_NAME)
        write_model_card(folder)
        return folder

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str] | None = None,
        use_ema: bool = True,
        device: str | torch.device = "cpu",
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
    ) -> ConditionalUNet:
        """Load a model saved by `save_pretrained`, a bundled model, or a Hub repo, in eval mode.

        ``name_or_path`` is read as `clevr_diffusion.model_folder.resolve_model_folder` reads
        it: ``None`` is the bundled default model (`clevr_diffusion.pretrained.DEFAULT_MODEL`);
        an existing local folder is loaded as it is; a bundled model's name
        (``"clevr-ddpm-small"``) is that model, shipped in the package and loaded offline;
        anything else is a Hub repo id.

        A folder's weights are ``model_ema.safetensors`` or ``model.safetensors``, or shards in
        the Hugging Face layout (``model_ema-00001-of-0000N.safetensors`` with the index
        ``model_ema.safetensors.index.json``, or the shards alone as older bundles hold them;
        bundled models ship float16 shards, cast to float32 here).

        Args:
            name_or_path: ``None``, a folder with ``config.json`` and the weights, a bundled
                model's name, or a Hugging Face Hub repo id such as ``"user/clevr-ddpm"``.
            use_ema: Load the EMA weights when there are some.
            device: Where to put the model.
            revision: Branch, tag or commit id of a repo (default: main).
            token: Hub token for a private repo.
            cache_dir: Download cache (default: the Hub cache under ``HF_HOME``).
            local_files_only: Load from the cache only, never the network.
            force_download: Download again even if cached.

        Raises:
            FileNotFoundError: If the folder or repo lacks ``config.json`` or the weights (or
                some of their shards), the repo does not exist (or is not cached while
                offline), or the bundled model is not in this installation.
            ValueError: If a repo has no such revision, or a weights file is damaged.
            CheckpointMismatchError: If the weights belong to another configuration.
        """
        source = resolve_model_folder(
            name_or_path,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            force_download=force_download,
        )
        return cls.from_source(source, use_ema, device)

    @classmethod
    def from_source(cls, source: ModelSource, use_ema: bool = True, device: str | torch.device = "cpu") -> ConditionalUNet:
        """Load from a folder `resolve_model_folder` found, in eval mode; errors name the repo
        when it came from the Hub.

        Raises:
            FileNotFoundError: If the folder lacks ``config.json`` or the weights (or some shards).
            ValueError: If a weights file is damaged.
            CheckpointMismatchError: If the weights belong to another configuration.
        """
        folder = source.folder
        source.require(CONFIG_NAME, ": pass a folder written by save_pretrained (DDPMTrainer writes one at the end of training)")
        model = cls(UNetConfig.load(folder / CONFIG_NAME))
        weights = find_weights(folder, use_ema)
        if weights is None:
            hint = "; it holds EMA weights only: load them with use_ema=True" if find_weights(folder, True) else ""
            raise source.missing(WEIGHTS_NAME, hint)
        try:
            state = load_weights(weights)
        except (ValueError, FileNotFoundError) as error:
            if source.repo_id is None:
                raise
            where = source.describe(None if weights.sharded else weights.files[0])
            raise type(error)(f"{where}: {error} (or pass force_download=True)") from error
        # Bundled shards are float16, to halve the package; the network computes in float32.
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        load_state_dict_strict(model, state, source.describe(weights.label))
        return model.to(device).eval()

    @property
    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _check_inputs(
        self, x: torch.Tensor, t: torch.Tensor | int, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"x must be (B, {cfg.in_channels}, H, W), got {tuple(x.shape)}")
        factor = cfg.downsampling_factor
        height, width = x.shape[-2:]
        if height % factor or width % factor:
            raise ValueError(
                f"image size {height}x{width} is not divisible by the UNet's downsampling factor "
                f"{factor}; resize or pad to a multiple of {factor} (e.g. "
                f"{-(-height // factor) * factor}x{-(-width // factor) * factor})"
            )
        batch = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"timesteps must be a scalar or shape ({batch},), got {tuple(t.shape)}")
        if labels is None:
            labels = x.new_zeros(batch, cfg.num_labels)
        elif labels.shape != (batch, cfg.num_labels):
            raise ValueError(
                f"labels must be (B, {cfg.num_labels}) multi-hot with B = {batch}, got "
                f"{tuple(labels.shape)}; encode label lists with clevr_diffusion.encode_batch"
            )
        return t, labels.to(dtype=x.dtype)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor | int, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Predict the noise (or velocity) in ``x``.

        Args:
            x: (B, C, H, W) noisy images, H and W multiples of ``config.downsampling_factor``.
            t: (B,) integer timesteps in [0, T), or one timestep for the whole batch.
            labels: (B, num_labels) multi-hot labels in {0, 1}; ``None`` or all-zero rows mean
                unconditional (the classifier-free guidance branch).

        Returns:
            (B, out_channels, H, W) prediction, same dtype as ``x``.
        """
        t, labels = self._check_inputs(x, t, labels)
        cond = self.time_embedding(t).to(x.dtype)
        if self.label_embedding is not None:
            cond = torch.cat([cond, self.label_embedding(labels)], dim=1)
        # Computed once a forward and shared by every cross-attention layer (None without any).
        tokens, mask = self.object_tokens(labels) if self.object_tokens is not None else (None, None)

        h = self.input_conv(x)
        skips = []
        for stage, down in zip(self.encoder, self.downsamplers, strict=True):
            h = stage(h, cond, tokens, mask)
            skips.append(h)
            h = down(h)

        h = self.mid_attention(self.mid_block1(h, cond))
        if self.mid_cross_attention is not None:
            assert tokens is not None and mask is not None  # built together with object_tokens
            h = self.mid_cross_attention(h, tokens, mask)
        h = self.mid_block2(h, cond)

        for stage, up in zip(self.decoder, self.upsamplers, strict=True):
            h = stage(torch.cat([h, skips.pop()], dim=1), cond, tokens, mask)
            h = up(h)

        return self.output_conv(self.act(self.output_norm(h, cond)))

