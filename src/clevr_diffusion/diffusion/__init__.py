"""The diffusion process: forward noising and reverse-time sampling (no networks here)."""

from .noise import NoiseConfig, NoiseProcess
from .sampler import DDPMSampler, SampleOutput, SamplingConfig
from .schedulers import DEFAULT_STEPS, SAMPLING_METHODS, build_scheduler

__all__ = [
    "DEFAULT_STEPS",
    "SAMPLING_METHODS",
    "DDPMSampler",
    "NoiseConfig",
    "NoiseProcess",
    "SampleOutput",
    "SamplingConfig",
    "build_scheduler",
]
