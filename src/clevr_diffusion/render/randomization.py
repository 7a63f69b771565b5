"""Domain randomisation: per-scene jitter of what CLEVR keeps fixed, for robust classifiers.

A classifier trained on one renderer's pixels learns that renderer's quirks. Rendering its
training data with `DomainRandomization` varies the light powers and colours, the strength of
indirect light, the floor's albedo, the materials' roughness and the field of view, well
beyond CLEVR's own ranges, while the object colours, shapes and so the labels stay true.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..utils.config import JsonConfig

if TYPE_CHECKING:
    import torch

__all__ = ["DomainRandomization", "SceneJitter"]


@dataclass
class DomainRandomization(JsonConfig):
    """Spreads of the per-scene jitter; 0 switches a part off.

    Multiplicative factors are ``exp(U(-a, a))`` for a spread ``a`` (so 0.5 means x0.61 to x1.65).

    Attributes:
        light_power: Spread of each lamp's and the sun's power (log scale).
        light_color: Spread of each lamp's colour channels (log scale, renormalised to keep the
            lamp's mean power).
        indirect: Spread of the indirect (bounce) light's strength (log scale).
        floor_albedo: Range ``(low, high)`` of the floor's grey albedo (CLEVR: 0.8).
        floor_tint: Spread of the floor's colour channels around its grey (log scale).
        roughness: Spread of the rubber and metal roughness (log scale).
        fov: Spread of the focal length (log scale); 0.1 changes object sizes by up to 10%.
    """

    light_power: float = 0.4
    light_color: float = 0.15
    indirect: float = 0.6
    floor_albedo: tuple[float, float] = (0.55, 0.95)
    floor_tint: float = 0.06
    roughness: float = 0.6
    fov: float = 0.08

    def __post_init__(self) -> None:
        low, high = self.floor_albedo
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"floor_albedo must be a range within [0, 1], got {self.floor_albedo!r}")
        for name in ("light_power", "light_color", "indirect", "floor_tint", "roughness", "fov"):
            value = getattr(self, name)
            if not 0.0 <= value <= 2.0:
                raise ValueError(f"{name} must be a spread in [0, 2], got {value!r}")

    def draw(self, generator: torch.Generator, num_lamps: int = 3) -> SceneJitter:
        """One scene's jitter from ``generator`` (CPU)."""
        import torch  # here, not at the top: the command's options read this module without torch

        u = torch.rand(4 * num_lamps + 11, generator=generator, dtype=torch.float64).tolist()
        it = iter(u)

        def factor(spread: float) -> float:
            return math.exp((2 * next(it) - 1) * spread)

        lamp_power = tuple(factor(self.light_power) for _ in range(num_lamps + 1))
        colours = []
        for _ in range(num_lamps):
            c = [factor(self.light_color) for _ in range(3)]
            mean = sum(c) / 3
            colours.append(tuple(v / mean for v in c))
        low, high = self.floor_albedo
        grey = low + (high - low) * next(it)
        tint = [factor(self.floor_tint) for _ in range(3)]
        mean = sum(tint) / 3
        return SceneJitter(
            lamp_power=lamp_power[:num_lamps],
            lamp_color=tuple(colours),
            sun_power=lamp_power[num_lamps],
            indirect=factor(self.indirect),
            floor_albedo=tuple(min(1.0, grey * t / mean) for t in tint),
            roughness=factor(self.roughness),
            focal=factor(self.fov),
        )


@dataclass(frozen=True)
class SceneJitter:
    """One scene's draw of `DomainRandomization` (all 1 / CLEVR's values when not randomised)."""

    lamp_power: tuple[float, ...] = (1.0, 1.0, 1.0)
    lamp_color: tuple[tuple[float, float, float], ...] = ((1.0, 1.0, 1.0),) * 3
    sun_power: float = 1.0
    indirect: float = 1.0
    floor_albedo: tuple[float, float, float] = (0.8, 0.8, 0.8)
    roughness: float = 1.0
    focal: float = 1.0
