"""Names and defaults shared by the library and the ``clevr-diffusion`` command's options.

This module imports nothing heavy (no torch, no diffusers): the command's argument parsers
read these values, and ``clevr-diffusion --help`` must answer before torch could even load.
The modules that use them (`clevr_diffusion.diffusion.schedulers`, `clevr_diffusion.labels`,
...) import them from here, so each is defined once.
"""

from __future__ import annotations

__all__ = [
    "CONDITION_SETS",
    "DEFAULT_MODEL",
    "GUIDANCE_MODES",
    "MAX_SHARD_BYTES",
    "MIXED_PRECISIONS",
    "SAMPLING_METHODS",
    "SAMPLING_PRESETS",
]

SAMPLING_METHODS: tuple[str, ...] = ("ddpm", "ddim", "dpm++", "unipc")
"""The sampling methods `build_scheduler` and `DDPMSampler` accept."""

SAMPLING_PRESETS: dict[str, tuple[str, int]] = {
    "ddpm-1000": ("ddpm", 1000),
    "ddim-50": ("ddim", 50),
    "dpm++-20": ("dpm++", 20),
    "unipc-10": ("unipc", 10),
}
"""Named (method, steps) pairs, slowest and most faithful first: ``ddpm-1000`` is the DDPM
paper's full ancestral chain; the others trade steps for higher-order deterministic solvers."""

GUIDANCE_MODES: tuple[str, ...] = ("joint", "composable")
"""``"joint"``: one conditional pass with the whole label set; ``"composable"``: one pass per
object, combined as a sum of guidance directions."""

CONDITION_SETS: tuple[str, ...] = ("test", "new_test")
"""The condition files bundled with the package (the i-CLEVR ``test.json`` and ``new_test.json``)."""

DEFAULT_MODEL = "clevr-ddpm-small"
"""The bundled model ``DDPMSampler.from_pretrained()`` loads when given no name."""

MAX_SHARD_BYTES = 15 * 2**20
"""Largest weight shard `export_bundle` writes by default (15 MiB of tensor data)."""

MIXED_PRECISIONS: tuple[str, ...] = ("auto", "no", "fp16", "bf16")
"""The autocast precisions `TrainerConfig.mixed_precision` accepts (``auto``: bf16 on a GPU that has it)."""
