"""Recipes: dotted-key changes, presets, the value syntax of --set and --vary."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clevr_diffusion import ConditionalUNet, Recipe
from clevr_diffusion.training.recipe import (
    RECIPES,
    RecipeError,
    get_recipe,
    parse_assignment,
    parse_value,
    split_values,
)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_preset_builds_a_model_and_round_trips(name: str, tmp_path: Path) -> None:
    recipe = get_recipe(name)
    model = ConditionalUNet(recipe.unet)
    assert recipe.image_size % model.config.downsampling_factor == 0
    recipe.save(tmp_path / "recipe.json")
    assert Recipe.load(tmp_path / "recipe.json") == recipe


def test_cpu_small_is_the_cpu_studys_best_variant() -> None:
    """The preset is documented as the study's winner: any drift between the two fails here."""
    from clevr_diffusion.ablation.plan import load_plan

    plan = load_plan(Path(__file__).resolve().parents[1] / "examples" / "ablations" / "cpu_32px.yaml")
    studied = plan.recipes()["v-pred, zero SNR, cosine, lr 1e-3"]
    # Only how long the run is, how often it saves and samples, and where: not what it learns
    # (unet.sample_size is informative; runs set it from image_size, which must agree).
    run_settings = {"max_steps", "checkpoint_every", "sample_every", "log_every", "cpu", "output_dir", "unet.sample_size"}
    differences = get_recipe("cpu-small").differences(studied)
    assert {key.removeprefix("trainer.") for key in differences} <= run_settings, differences
    assert get_recipe("cpu-small").noise == get_recipe("gpu-base").noise == studied.noise


def test_override_changes_exactly_the_named_settings() -> None:
    base = Recipe()
    changed = base.override({"unet.base_channels": 64, "noise.beta_schedule": "squaredcos_cap_v2", "unet.channel_mults": [1, 2, 2]})
    assert changed.differences(base) == {
        "unet.base_channels": (64, 32),
        "unet.channel_mults": ([1, 2, 2], [1, 2, 4, 8]),
        "noise.beta_schedule": ("squaredcos_cap_v2", "linear"),
    }
    assert changed.unet.channel_mults == (1, 2, 2)  # JSON lists become the config's tuples
    assert base.unet.base_channels == 32  # a copy: the base is untouched


def test_a_preset_brings_its_method_and_a_method_drops_the_preset() -> None:
    base = get_recipe("cpu-small")  # dpm++-20
    unipc = base.override({"sampling.preset": "unipc-10"})
    assert (unipc.sampling.method, unipc.sampling.preset) == ("unipc", "unipc-10")
    ddim = base.override({"sampling.method": "ddim", "sampling.num_inference_steps": 30})
    assert (ddim.sampling.method, ddim.sampling.preset, ddim.sampling.num_inference_steps) == ("ddim", None, 30)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"unet.base_chanels": 3}, "no recipe setting 'unet.base_chanels'; did you mean 'unet.base_channels'"),
        ({"nosie.beta_schedule": "linear"}, "did you mean 'noise.beta_schedule'"),
        ({"whatever": 1}, "keys are image_size or unet.FIELD"),
        ({"unet": 1}, "no recipe setting 'unet'"),
        ({"unet.dropout": 2}, r"unet.dropout=2: dropout must be in \[0, 1\)"),
        ({"image_size": 30}, "image_size 30 must be >= 8 and a multiple of the network's downsampling factor 8"),
        ({"noise.beta_schedule": "cosine"}, "noise.beta_schedule=\"cosine\": .*squaredcos_cap_v2"),
        ({"trainer.lr_schedule": "step", "trainer.batch_size": 8}, r"lr_schedule must be .* \(setting trainer.lr_schedule, trainer.batch_size\)"),
    ],
)
def test_bad_changes_are_named(changes: dict[str, object], match: str) -> None:
    with pytest.raises(RecipeError, match=match):
        Recipe().override(changes)


def test_unknown_preset_suggests_the_nearest() -> None:
    with pytest.raises(RecipeError, match="no recipe 'cpu-smal'; did you mean 'cpu-small'"):
        get_recipe("cpu-smal")


@pytest.mark.parametrize(
    ("text", "value"),
    [("64", 64), ("2e-4", 2e-4), ("true", True), ("null", None), ("[1,2,4]", [1, 2, 4]), ("cosine", "cosine"), ("v_prediction", "v_prediction")],
)
def test_values_are_json_where_they_parse(text: str, value: object) -> None:
    assert parse_value(text) == value


@given(st.lists(st.one_of(st.integers(0, 99).map(str), st.lists(st.integers(0, 9), min_size=1, max_size=4).map(lambda v: "[" + ",".join(map(str, v)) + "]")), min_size=1, max_size=5))
def test_split_values_keeps_bracketed_lists_whole(parts: list[str]) -> None:
    assert split_values(",".join(parts)) == parts


@pytest.mark.parametrize("text", ["a,,b", "[1,2", "1]", ""])
def test_split_values_refuses_malformed_lists(text: str) -> None:
    with pytest.raises(RecipeError):
        split_values(text)


@pytest.mark.parametrize("text", ["novalue", "=3", "key="])
def test_assignments_need_a_key_and_a_value(text: str) -> None:
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        parse_assignment(text)
