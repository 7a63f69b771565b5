"""Domain randomisation: per-scene jitter that is deterministic, bounded and label-preserving."""

from __future__ import annotations

import pytest
import torch

from clevr_diffusion.render import DomainRandomization, Scene, SceneObject, render, sample_scenes
from clevr_diffusion.render.scene_batch import FLOOR_ALBEDO, SceneBatch

OFF = DomainRandomization(
    light_power=0.0, light_color=0.0, indirect=0.0, floor_albedo=(FLOOR_ALBEDO, FLOOR_ALBEDO),
    floor_tint=0.0, roughness=0.0, fov=0.0,
)  # fmt: skip


def _scenes() -> list[Scene]:
    return [
        Scene(objects=(SceneObject("sphere", "red", "large", "rubber", (0.0, 0.0), 0.7),)),
        Scene(objects=(SceneObject("cube", "cyan", "large", "metal", (1.0, -1.0), 0.7, 20.0),)),
    ]


def test_config_round_trips_and_rejects_bad_spreads() -> None:
    config = DomainRandomization(light_power=0.3, floor_albedo=(0.5, 0.9))
    assert DomainRandomization.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="floor_albedo"):
        DomainRandomization(floor_albedo=(0.9, 0.5))
    with pytest.raises(ValueError, match="fov"):
        DomainRandomization(fov=-0.1)


def test_zero_spreads_render_exactly_like_no_randomisation() -> None:
    plain = render(_scenes(), 16, 16, seed=2)
    off = render(_scenes(), 16, 16, seed=2, randomization=OFF)
    assert torch.allclose(plain.images, off.images, atol=1e-6)


def test_jitter_is_deterministic_per_scene_and_changes_the_look() -> None:
    config = DomainRandomization()
    a = render(_scenes(), 16, 16, seed=2, randomization=config)
    b = render(_scenes(), 16, 16, seed=2, randomization=config)
    alone = render(_scenes()[1], 16, 16, seed=2, scene_offset=1, randomization=config)
    plain = render(_scenes(), 16, 16, seed=2)
    assert torch.equal(a.images, b.images)
    assert torch.equal(alone.images[0], a.images[1])
    assert (a.images - plain.images).abs().mean() > 0.01
    # Without field-of-view jitter the objects stay where they were: masks (labels) are kept.
    no_fov = render(_scenes(), 16, 16, seed=2, randomization=DomainRandomization(fov=0.0))
    assert torch.equal(no_fov.object_ids, plain.object_ids)


def test_draws_stay_within_their_ranges() -> None:
    config = DomainRandomization(light_power=0.5, floor_albedo=(0.6, 0.7), floor_tint=0.0, fov=0.1)
    gens = [torch.Generator().manual_seed(i) for i in range(50)]
    batch = SceneBatch.from_scenes(sample_scenes(1, seed=0) * 50, randomization=config, generators=gens)
    floor = batch.albedo[:, 1]
    assert (floor >= 0.6 - 1e-6).all() and (floor <= 0.7 + 1e-6).all()
    assert (batch.focal >= torch.exp(torch.tensor(-0.1)) - 1e-6).all()
    assert (batch.focal <= torch.exp(torch.tensor(0.1)) + 1e-6).all()
    assert batch.focal.std() > 0.01 and floor[:, 0].std() > 0.01
    # Object colours are never jittered.
    plain = SceneBatch.from_scenes(sample_scenes(1, seed=0) * 50)
    assert torch.equal(batch.albedo[:, 2:], plain.albedo[:, 2:])


def test_randomisation_needs_a_generator_per_scene() -> None:
    with pytest.raises(ValueError, match="generator"):
        SceneBatch.from_scenes(_scenes(), randomization=DomainRandomization())
