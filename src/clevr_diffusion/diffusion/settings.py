"""`SamplingSettings`: what one request asks of the sampler, and the rule for which setting wins.

A model folder saves its default sampling settings (`SamplingConfig`, ``sampler_config.json``).
A request (`DDPMSampler.sample`, `evaluate`, the command's sampling options) may ask for
others: it carries them as one `SamplingSettings`, whose fields are ``None`` where the request
says nothing. For every field, the first of these that gives a value wins:

1. an explicit keyword argument (``sample(labels, guidance_scale=2)``);
2. the `SamplingSettings` passed (``sample(labels, settings)``);
3. the model folder's saved `SamplingConfig` (``DDPMSampler.config``);
4. the library's defaults (the method's step count, the model's ``sample_size``).

Method and steps follow `DDPMSampler.resolve_settings` within that order: a preset names both,
an explicit ``method`` or ``num_inference_steps`` wins over the preset's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["SamplingSettings"]


@dataclass(frozen=True)
class SamplingSettings:
    """Sampling settings of one request; ``None`` leaves a field to the model's saved settings.

    Attributes:
        preset: A name from `SAMPLING_PRESETS` (``"dpm++-20"``), setting method and steps.
        method: ``"ddpm"``, ``"ddim"``, ``"dpm++"`` or ``"unipc"``.
        num_inference_steps: Denoising steps.
        guidance_scale: Classifier-free guidance scale (1: none).
        guidance_rescale: Guidance rescale phi in [0, 1] (0: off).
        guidance_mode: ``"joint"`` or ``"composable"``.
        image_size: Side of the square images drawn.
        output_size: Side the finished images are resized to.
    """

    preset: str | None = None
    method: str | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    guidance_rescale: float | None = None
    guidance_mode: str | None = None
    image_size: int | None = None
    output_size: int | None = None

    def override(self, **given: Any) -> SamplingSettings:
        """A copy with the values in ``given`` that are not ``None`` in place of this one's.

        Raises:
            TypeError: For a name that is no field.
        """
        return dataclasses.replace(self, **{name: value for name, value in given.items() if value is not None})

    def given(self) -> dict[str, Any]:
        """The fields this request sets (not ``None``), by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}
