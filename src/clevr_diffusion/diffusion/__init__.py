"""The diffusion process: forward noising and reverse-time sampling (no networks here)."""

from .guidance import GUIDANCE_MODES, composed_prediction, guided_prediction, rescale_guidance
from .noise import NoiseConfig, NoiseProcess
from .sampler import DDPMSampler, SampleOutput, SamplingConfig
from .schedulers import DEFAULT_STEPS, SAMPLING_METHODS, SAMPLING_PRESETS, build_scheduler, parse_preset
from .settings import SamplingSettings

__all__ = [
    "DEFAULT_STEPS",
    "GUIDANCE_MODES",
    "SAMPLING_METHODS",
    "SAMPLING_PRESETS",
    "DDPMSampler",
    "NoiseConfig",
    "NoiseProcess",
    "SampleOutput",
    "SamplingConfig",
    "SamplingSettings",
    "build_scheduler",
    "composed_prediction",
    "guided_prediction",
    "parse_preset",
    "rescale_guidance",
]
