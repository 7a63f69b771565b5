"""The model folder: weights in the Hugging Face layout, resolving names, run files, the model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors import safe_open

from clevr_diffusion import DEFAULT_MODEL, ConditionalUNet, DDPMSampler
from clevr_diffusion.model_folder import (
    bundled_model_dir,
    find_model_folder,
    find_weights,
    resolve_model_folder,
    weight_set,
)
from clevr_diffusion.model_folder.weights import load_weights, read_weights_metadata, save_weights


def _state(sizes: tuple[int, ...] = (1000, 3000, 2000)) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {f"layer{i}.weight": torch.randn(n) for i, n in enumerate(sizes)}


def test_weights_round_trip_as_one_file_or_indexed_shards(tmp_path: Path) -> None:
    state = _state()
    single = save_weights(state, tmp_path, "model", metadata={"library": "clevr-diffusion"})
    assert [p.name for p in single] == ["model.safetensors"]
    with safe_open(str(single[0]), framework="pt") as handle:
        assert handle.metadata() == {"format": "pt", "library": "clevr-diffusion"}  # what Hub loaders check
    files = weight_set(tmp_path, "model")
    assert files is not None and not files.sharded
    assert all(torch.equal(v, state[k]) for k, v in load_weights(files).items())

    sharded = save_weights(state, tmp_path, "model", max_shard_bytes=16_000, metadata={"library": "x"})
    names = sorted(p.name for p in tmp_path.iterdir())
    # The single file of the earlier save is gone: never two sets of one prefix side by side.
    assert names == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]
    assert [p.name for p in sharded][-1] == "model.safetensors.index.json"  # the index last
    files = weight_set(tmp_path, "model")
    assert files is not None and files.sharded and files.index == "model.safetensors.index.json"
    assert read_weights_metadata(files)["library"] == "x"
    loaded = load_weights(files)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)

    save_weights(state, tmp_path, "model")  # and back to one file: shards and index removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_a_damaged_index_or_shard_is_a_clear_error(tmp_path: Path) -> None:
    save_weights(_state(), tmp_path, "model", max_shard_bytes=16_000)
    index = tmp_path / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["extra.weight"] = "model-00001-of-00002.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="other tensors than model.safetensors.index.json lists"):
        load_weights(weight_set(tmp_path, "model"))
    index.write_text("{not json")
    with pytest.raises(ValueError, match="is not a weights index"):
        weight_set(tmp_path, "model")
    index.unlink()  # shards alone, as older bundles hold them: the count comes from the names
    shard = tmp_path / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:50])
    with pytest.raises(ValueError, match="not a readable safetensors file; it may be truncated"):
        load_weights(weight_set(tmp_path, "model"))


def test_ema_weights_come_first_unless_use_ema_is_off(tmp_path: Path) -> None:
    save_weights(_state(), tmp_path, "model")
    save_weights(_state((5,)), tmp_path, "model_ema", max_shard_bytes=4)
    assert find_weights(tmp_path).prefix == "model_ema"
    assert find_weights(tmp_path, use_ema=False).prefix == "model"
    assert find_weights(tmp_path / "nothing") is None


def test_names_resolve_once_to_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_unet: ConditionalUNet) -> None:
    assert resolve_model_folder().folder == bundled_model_dir() == resolve_model_folder(DEFAULT_MODEL).folder
    assert resolve_model_folder().repo_id is None
    with pytest.raises(FileNotFoundError, match="did you mean 'clevr-ddpm-small'"):
        resolve_model_folder("clevr-ddpm-smal")
    run = tmp_path / "run"
    DDPMSampler(tiny_unet).save_pretrained(run / "model")
    (run / "trainer_config.json").write_text("{}")
    assert resolve_model_folder(run).folder == run  # a folder is itself, not checked here
    assert find_model_folder(run) == run / "model"  # a run folder's model
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        find_model_folder(tmp_path)
    monkeypatch.chdir(run)
    assert resolve_model_folder("model").folder == Path("model")  # a local folder wins over a name


def test_the_card_is_a_hub_model_card(tmp_path: Path, tiny_unet: ConditionalUNet) -> None:
    folder = DDPMSampler(tiny_unet).save_pretrained(tmp_path / "m")
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "clevr-diffusion" and card.data.license == "mit"
    assert "i-clevr" in card.data.tags
    assert card.data.to_dict()["clevr_diffusion"]["labels"][0] == "gray cube"
    assert "## Usage" in card.text and "model.safetensors" in card.text
