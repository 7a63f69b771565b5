"""`AblationPlan`: what an ablation trains and how it scores it, read from YAML, JSON or options."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training.recipe import Recipe, RecipeError, get_recipe, parse_assignment, parse_value, split_values
from ..utils.config import JsonConfig, load_json_text

__all__ = ["BASELINE", "AblationPlan", "PlanError", "load_plan", "vary_variants"]

BASELINE = "baseline"
"""The name of the variant that changes nothing in the base recipe."""

_SAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


class PlanError(RecipeError):
    """An ablation plan that cannot run: a bad file, key, value or variant."""


@dataclass
class AblationPlan(JsonConfig):
    """An ablation: variants of one base recipe, trained on the same data, seeds and image
    budget, and scored at the same points.

    Attributes:
        recipe: The base recipe: a preset name (`clevr_diffusion.training.recipe.RECIPES`) or
            ``None`` for the library's defaults (`Recipe()`).
        base: Changes to the recipe shared by every variant, by dotted key
            (``{"trainer.batch_size": 32}``).
        variants: Variant name to its changes of the base (``{"cosine":
            {"noise.beta_schedule": "squaredcos_cap_v2"}}``); ``{}`` is the base itself.
        images: Training images each variant sees (its optimiser steps are this over the
            images a step takes, rounded up).
        eval_at: Training images after which every variant is scored, increasing, the last
            at most ``images`` (empty: four even points, ``images`` / 4 apart).
        draws: Sampling seeds per condition file at each point (the spread of the scores).
        eval_seed: The first sampling seed (draws use ``eval_seed``, ``eval_seed + 1``, ...).
        files: Condition files scored: ``"test"``, ``"new_test"`` or paths.
        data: An i-CLEVR-format folder to train on; ``None`` renders the built-in data.
        render_scenes: Scenes rendered when ``data`` is ``None`` (3 nested frames each).
        render_seed: Seed of the rendered scenes.
    """

    recipe: str | None = "cpu-small"
    base: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=lambda: {BASELINE: {}})
    images: int = 60_000
    eval_at: tuple[int, ...] = ()
    draws: int = 3
    eval_seed: int = 1000
    files: tuple[str, ...] = ("test", "new_test")
    data: str | None = None
    render_scenes: int = 6003
    render_seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.images >= 1, f"images must be >= 1, got {self.images}"),
            (self.draws >= 1, f"draws must be >= 1, got {self.draws}"),
            (self.render_scenes >= 1, f"render_scenes must be >= 1, got {self.render_scenes}"),
            (bool(self.variants), "the plan has no variants"),
            (bool(self.files), "the plan scores no condition files"),
            (list(self.eval_at) == sorted(set(self.eval_at)), f"eval_at must increase, got {list(self.eval_at)}"),
            (all(0 < p <= self.images for p in self.eval_at), f"eval_at must lie in [1, images = {self.images}]"),
        ]
        for ok, message in checks:
            if not ok:
                raise PlanError(message)
        folders: dict[str, str] = {}
        for name, changes in self.variants.items():
            if not isinstance(changes, dict):
                raise PlanError(f"variant {name!r} must map setting keys to values, got {type(changes).__name__}")
            slug = variant_folder(name)
            if slug in folders:
                raise PlanError(f"variants {folders[slug]!r} and {name!r} would share the folder {slug!r}; rename one")
            folders[slug] = name

    @property
    def points(self) -> tuple[int, ...]:
        """The training images at which variants are scored (``eval_at`` or four even points)."""
        if self.eval_at:
            return self.eval_at
        return tuple(sorted({math.ceil(self.images * k / 4) for k in range(1, 5)}))

    def base_recipe(self) -> Recipe:
        """The recipe every variant starts from: the preset with ``base`` applied."""
        recipe = get_recipe(self.recipe) if self.recipe is not None else Recipe()
        return recipe.override(self.base)

    def recipes(self) -> dict[str, Recipe]:
        """Each variant's whole recipe, by name (validated: a bad key or value raises).

        Raises:
            PlanError: Naming the variant whose changes are not valid.
        """
        base = self.base_recipe()
        out = {}
        for name, changes in self.variants.items():
            try:
                out[name] = base.override(changes)
            except RecipeError as error:
                raise PlanError(f"variant {name!r}: {error}") from error
        return out

    def scoring(self) -> dict[str, Any]:
        """The settings that make two plans' scores comparable (same data, draws and files)."""
        keep = ("draws", "eval_seed", "files", "data", "render_scenes", "render_seed")
        return {k: v for k, v in self.to_dict().items() if k in keep}


def variant_folder(name: str) -> str:
    """A variant's folder name: its name with characters outside ``[A-Za-z0-9._=+-]`` as ``_``."""
    slug = _SAFE.sub("_", name).strip("._") or "_"
    return slug


def vary_variants(assignments: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Variants from ``--vary KEY=V1,V2`` options: the baseline plus one variant per value,
    each changing one setting of the base (one factor at a time).

    Args:
        assignments: ``["noise.beta_schedule=linear,squaredcos_cap_v2", "unet.base_channels=32,64"]``;
            values are JSON where they parse (``[1,2,4]`` a list, ``2e-4`` a number), else text.

    Returns:
        ``{"baseline": {}, "noise.beta_schedule=squaredcos_cap_v2": {...}, ...}`` (a value equal
        to the base's still gets its own variant; it is cheap to spot in the table).

    Raises:
        PlanError: For an option that is not ``KEY=V1,V2,...``.
    """
    variants: dict[str, dict[str, Any]] = {BASELINE: {}}
    for text in assignments:
        try:
            key, values = parse_assignment(text)
            parts = split_values(values)
        except RecipeError as error:
            raise PlanError(f"--vary {text!r}: {error}") from error
        for part in parts:
            variants[f"{key}={part}"] = {key: parse_value(part)}
    return variants


def load_plan(path: str | os.PathLike[str]) -> AblationPlan:
    """Read a plan file: YAML (``.yaml``/``.yml``) or JSON, holding `AblationPlan`'s fields.

    Raises:
        FileNotFoundError: If there is no such file.
        PlanError: If it cannot be parsed or holds unknown fields or bad values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ablation plan at {path}")
    fix = "fix the file (see `clevr-diffusion ablate --help` for the fields)"
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise PlanError(f"{path} is not valid YAML ({error}); {fix}") from error
    else:
        data = load_json_text(path, fix, PlanError)
    if not isinstance(data, dict):
        raise PlanError(f"{path} must hold a mapping of plan fields, got {type(data).__name__}; {fix}")
    if data.get("variants") is None:
        data.pop("variants", None)
    try:
        plan = AblationPlan.from_dict(data)
        plan.recipes()  # every key and value checked now, not after hours of training
    except PlanError as error:
        raise PlanError(f"{path}: {error}") from error
    except (TypeError, ValueError) as error:
        raise PlanError(f"{path}: {error}") from error
    return plan

