"""`Recipe`: everything that decides what a training run learns, in one config, and the presets.

A recipe joins the four configs a run is made of (the network's `UNetConfig`, the noise
process's `NoiseConfig`, the trainer's `TrainerConfig`, the model's default `SamplingConfig`)
and the training image size. Settings are named by dotted keys, ``"unet.base_channels"`` or
``"trainer.learning_rate"`` (``"image_size"`` alone), so a change to a recipe is a flat mapping
of keys to values: what ``clevr-diffusion train --set``, an ablation's variants and its
``--vary`` options write.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..diffusion.noise import NoiseConfig
from ..diffusion.sampler import SamplingConfig
from ..models.config import UNetConfig
from ..utils.config import JsonConfig
from .config import TrainerConfig

__all__ = ["RECIPES", "Recipe", "RecipeError", "get_recipe", "parse_assignment", "parse_value", "split_values"]

SECTIONS: dict[str, type[JsonConfig]] = {
    "unet": UNetConfig,
    "noise": NoiseConfig,
    "trainer": TrainerConfig,
    "sampling": SamplingConfig,
}
"""The configs of a recipe, by the prefix of their keys."""

_MIN_IMAGE_SIZE = 8


class RecipeError(ValueError):
    """A recipe name, key or value that does not exist or is not valid."""


@dataclass
class Recipe(JsonConfig):
    """A whole training recipe: network, noise process, optimisation, sampling, image size.

    Attributes:
        image_size: Side of the square training images, in pixels (a multiple of the
            network's downsampling factor).
        unet: The network (`ConditionalUNet`'s config).
        noise: The noise process.
        trainer: Optimisation and run settings (its ``output_dir`` is set per run).
        sampling: The finished model's default sampling settings (saved with it as
            ``sampler_config.json``) and those of its sample grids; an ablation evaluates with
            them. Default: what the trainer uses without a recipe (DDIM, 50 steps, no guidance).
    """

    image_size: int = 64
    unet: UNetConfig = field(default_factory=UNetConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sampling: SamplingConfig = field(default_factory=lambda: TrainerConfig().sampling_config())

    def __post_init__(self) -> None:
        factor = self.unet.downsampling_factor
        if self.image_size < _MIN_IMAGE_SIZE or self.image_size % factor:
            raise RecipeError(
                f"image_size {self.image_size} must be >= {_MIN_IMAGE_SIZE} and a multiple of the network's "
                f"downsampling factor {factor} (unet.channel_mults has {len(self.unet.channel_mults)} stages)"
            )

    def flat(self) -> dict[str, Any]:
        """Every setting by its dotted key (``{"image_size": 64, "unet.base_channels": 32, ...}``),
        values as JSON writes them."""
        out: dict[str, Any] = {"image_size": self.image_size}
        for section in SECTIONS:
            config = getattr(self, section)
            # Every field, also those a config leaves out of its file while they hold their default.
            for f in dataclasses.fields(config):
                value = getattr(config, f.name)
                out[f"{section}.{f.name}"] = list(value) if isinstance(value, tuple) else value
        return out

    def override(self, changes: Mapping[str, Any]) -> Recipe:
        """A copy with some settings changed, by dotted key; every config is validated again.

        Args:
            changes: ``{"unet.base_channels": 64, "noise.prediction_type": "v_prediction"}``;
                values as JSON would give them (lists for tuples).

        Raises:
            RecipeError: For a key that names no setting (with the nearest valid keys) or a
                value that a config refuses.
        """
        data = self.to_dict()
        # As SamplingConfig.replace: a new preset brings its method and steps, a new method
        # drops the preset (SamplingConfig refuses a preset beside another method).
        if "sampling.preset" in changes and "sampling.method" not in changes:
            data["sampling"].pop("method")
            if "sampling.num_inference_steps" not in changes:
                data["sampling"]["num_inference_steps"] = None
        elif "sampling.method" in changes and "sampling.preset" not in changes:
            data["sampling"]["preset"] = None
        for key, value in changes.items():
            section, _, name = key.partition(".")
            if name and section in SECTIONS and name in _field_names(SECTIONS[section]):
                data[section][name] = value
            elif not name and key in _top_level_names():
                data[key] = value
            else:
                raise RecipeError(f"no recipe setting {key!r}{_suggest(key, self.flat())}")
        try:
            return Recipe.from_dict(data)
        except RecipeError:
            raise
        except (TypeError, ValueError) as error:
            if len(changes) == 1:
                ((key, value),) = changes.items()
                raise RecipeError(f"{key}={json.dumps(value)}: {error}") from error
            raise RecipeError(f"{error} (setting {', '.join(changes)})") from error

    def images_per_step(self, processes: int = 1) -> int:
        """Training images one optimiser step takes with ``processes`` processes."""
        return self.trainer.batch_size * self.trainer.gradient_accumulation_steps * processes

    def differences(self, other: Recipe) -> dict[str, tuple[Any, Any]]:
        """The settings that differ from ``other``'s: ``{key: (this value, other value)}``."""
        mine, theirs = self.flat(), other.flat()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}


def _field_names(config: type[JsonConfig]) -> set[str]:
    return {f.name for f in dataclasses.fields(config)}


def _top_level_names() -> set[str]:
    return _field_names(Recipe) - set(SECTIONS)


def _suggest(key: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return f"; keys are image_size or {', '.join(s + '.FIELD' for s in SECTIONS)} (fields of their configs)"


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (``64``, ``2e-4``, ``true``, ``null``,
    ``[1,2,4]``), else the text itself (``cosine``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def split_values(text: str) -> list[str]:
    """Split ``"v1,v2,[1,2],v3"`` at the commas outside brackets: ``["v1", "v2", "[1,2]", "v3"]``.

    Raises:
        RecipeError: For unbalanced brackets or an empty value.
    """
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth < 0:
                raise RecipeError(f"unbalanced brackets in {text!r}")
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    if depth:
        raise RecipeError(f"unbalanced brackets in {text!r}")
    parts.append(text[start:].strip())
    if any(not p for p in parts):
        raise RecipeError(f"empty value in {text!r}; write KEY=V1,V2,... with no empty values")
    return parts


def parse_assignment(text: str) -> tuple[str, str]:
    """Split ``"KEY=VALUE"`` into its key and value text.

    Raises:
        RecipeError: When there is no ``=`` or no key.
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise RecipeError(f"expected KEY=VALUE such as trainer.learning_rate=5e-4, got {text!r}")
    return key.strip(), value.strip()


def _study_noise() -> NoiseConfig:
    """The noise process that led the CPU ablation study: v-prediction on a cosine schedule
    rescaled to zero terminal SNR."""
    return NoiseConfig(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", rescale_betas_zero_snr=True)


def _cpu_small() -> Recipe:
    """The recipe that learned fastest on a CPU in the ablation study (docs/ablations.md): 32 x 32,
    base 32 (4.0 M parameters), v-prediction on a zero-terminal-SNR cosine schedule, AdamW 1e-3.

    Every noise and optimisation setting is the study's best variant ("v-pred, zero SNR, cosine,
    lr 1e-3" of ``examples/ablations/cpu_32px.yaml``); only the length, checkpointing and
    samples differ. 18,000 steps of 32 (576,000 images) take about five hours on two idle
    cores. float32: bf16 autocast is many times slower on CPUs without bfloat16 instructions.
    """
    return Recipe(
        image_size=32,
        unet=UNetConfig(base_channels=32, channel_mults=(1, 2, 4), attention_stages=(2,), dropout=0.0, sample_size=32),
        noise=_study_noise(),
        trainer=TrainerConfig(
            max_steps=18_000,
            batch_size=32,
            learning_rate=1e-3,
            warmup_steps=200,
            ema_decay=0.999,
            snr_gamma=5.0,
            mixed_precision="no",
            checkpoint_every=500,
            sample_every=2000,
            log_every=50,
        ),
        sampling=SamplingConfig(preset="dpm++-20", guidance_scale=3.0, output_size=64),
    )


def _gpu_base() -> Recipe:
    """The library's default network at 64 x 64, batch 128, bf16 on a GPU, with the noise process
    that led the CPU study (v-prediction, zero-terminal-SNR cosine schedule; not yet measured on
    a GPU)."""
    return Recipe(
        image_size=64,
        unet=UNetConfig(),
        noise=_study_noise(),
        trainer=TrainerConfig(max_steps=20_000, batch_size=128, learning_rate=2e-4, warmup_steps=500, snr_gamma=5.0),
        sampling=SamplingConfig(preset="dpm++-20", guidance_scale=3.0),
    )


RECIPES: dict[str, Any] = {
    "cpu-small": _cpu_small,
    "gpu-base": _gpu_base,
}
"""The presets of ``train --recipe NAME``: each name to a function that builds its `Recipe`."""


def get_recipe(name: str) -> Recipe:
    """The preset recipe called ``name`` (a key of `RECIPES`).

    Raises:
        RecipeError: For an unknown name, listing the presets.
    """
    if name not in RECIPES:
        close = difflib.get_close_matches(name, list(RECIPES), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise RecipeError(f"no recipe {name!r}; {hint}presets: {', '.join(RECIPES)} (or a recipe.json file)")
    return RECIPES[name]()
