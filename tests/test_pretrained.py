"""Bundled pretrained models: export to float16 shards, loading by name, the default model, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import load_torch_model
from safetensors import safe_open
from safetensors.torch import load_file

from clevr_diffusion import (
    DEFAULT_MODEL,
    ConditionalUNet,
    DDPMSampler,
    NoiseConfig,
    SamplingConfig,
    export_bundle,
    pretrained,
)
from clevr_diffusion.cli import main
from clevr_diffusion.model_folder import bundled
from clevr_diffusion.pretrained import bundled_model_dir, bundled_models_root


@pytest.fixture
def sampler(tiny_unet: ConditionalUNet) -> DDPMSampler:
    return DDPMSampler(tiny_unet, NoiseConfig(num_train_timesteps=100), SamplingConfig(method="ddim", num_inference_steps=50))


@pytest.fixture
def model_folder(sampler: DDPMSampler, tmp_path: Path) -> Path:
    """A trained-model folder as the trainer writes it, with EMA weights unlike the raw ones."""
    torch.manual_seed(1)
    ema = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in sampler.model.state_dict().items()}
    return sampler.save_pretrained(tmp_path / "run" / "model", ema_state_dict=ema)


@pytest.fixture
def bundle_root(model_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The package's bundled models replaced by a tmp folder holding the tiny model as the default."""
    root = tmp_path / "resources" / "models"
    export_bundle(model_folder, root / DEFAULT_MODEL)
    monkeypatch.setattr(bundled, "bundled_models_root", lambda: root)
    return root


def _shard_data_bytes(path: Path) -> int:
    with safe_open(str(path), framework="pt") as f:
        return sum(f.get_tensor(k).numel() * f.get_tensor(k).element_size() for k in f.keys())


@pytest.mark.slow
def test_export_round_trip_is_float16_ema_and_samples_like_the_original(model_folder: Path, tmp_path: Path) -> None:
    out = export_bundle(model_folder, tmp_path / "bundle")
    names = {p.name for p in out.iterdir()}
    assert names == {
        "model_ema.safetensors", "config.json", "scheduler_config.json", "sampler_config.json", "README.md",
    }  # fmt: skip
    for name in ("config.json", "scheduler_config.json", "sampler_config.json"):
        assert json.loads((out / name).read_text()) == json.loads((model_folder / name).read_text())
    stored = load_file(str(out / "model_ema.safetensors"))  # one shard: a single file, as huggingface_hub writes it
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}

    original = DDPMSampler.from_pretrained(model_folder)  # float32 EMA weights
    bundled = DDPMSampler.from_pretrained(out)
    assert all(p.dtype == torch.float32 for p in bundled.model.parameters())
    ema = load_file(str(model_folder / "model_ema.safetensors"))
    for key, value in bundled.model.state_dict().items():
        torch.testing.assert_close(value, ema[key], atol=1e-3, rtol=1e-3)  # EMA, not the raw weights
    x, t, labels = torch.randn(2, 3, 16, 16), torch.tensor([5, 90]), torch.eye(24)[:2]
    with torch.no_grad():
        torch.testing.assert_close(bundled.model(x, t, labels), original.model(x, t, labels), atol=1e-2, rtol=1e-2)
    conditions = [["red cube"], ["blue sphere", "gray cylinder"]]
    a = original.sample(conditions, preset="unipc-10", guidance_scale=2.0, seed=0, progress=False).images
    b = bundled.sample(conditions, preset="unipc-10", guidance_scale=2.0, seed=0, progress=False).images
    torch.testing.assert_close(b, a, atol=2e-2, rtol=0)


def test_export_splits_into_shards_of_at_most_max_bytes(model_folder: Path, tmp_path: Path) -> None:
    state = load_file(str(model_folder / "model_ema.safetensors"))
    largest = max(v.numel() * 2 for v in state.values())
    limit = max(largest, sum(v.numel() * 2 for v in state.values()) // 5)
    out = export_bundle(model_folder, tmp_path / "bundle", max_shard_bytes=limit)
    shards = sorted(out.glob("model_ema-*.safetensors"))
    assert len(shards) >= 5
    assert all(_shard_data_bytes(p) <= limit for p in shards)
    index = json.loads((out / "model_ema.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == [p.name for p in shards]
    whole = export_bundle(model_folder, tmp_path / "whole")
    split, single = ConditionalUNet.from_pretrained(out), ConditionalUNet.from_pretrained(whole)
    for key, value in split.state_dict().items():
        assert torch.equal(value, single.state_dict()[key])
    # Hub tools read the shards through the index, strictly, with no help from us.
    other = ConditionalUNet(split.config)
    # strict=False: huggingface_hub 0.27 checks each shard alone with strict=True; the keys are checked here.
    result = load_torch_model(other, out, strict=False, filename_pattern="model_ema{suffix}.safetensors")
    assert not result.missing_keys and not result.unexpected_keys
    assert all(torch.equal(v.float(), split.state_dict()[k]) for k, v in other.state_dict().items())
    # Exporting again with bigger shards replaces the old set instead of mixing with it.
    export_bundle(model_folder, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("model")) == ["model_ema.safetensors"]


def test_a_missing_shard_is_a_clear_error(model_folder: Path, tmp_path: Path) -> None:
    out = export_bundle(model_folder, tmp_path / "bundle", max_shard_bytes=40_000)
    shards = sorted(out.glob("model_ema-*.safetensors"))
    shards[1].unlink()
    with pytest.raises(FileNotFoundError, match=f"incomplete.*missing {shards[1].name}"):
        DDPMSampler.from_pretrained(out)


def test_export_from_a_run_folder_a_sampler_and_without_ema(sampler: DDPMSampler, model_folder: Path, tmp_path: Path) -> None:
    from_run = export_bundle(model_folder.parent, tmp_path / "from_run")  # RUN, not RUN/model
    assert (from_run / "model_ema.safetensors").is_file()
    # A sampler is exported as it is: raw weights, loaded whatever use_ema says.
    from_sampler = export_bundle(sampler, tmp_path / "from_sampler", sampling={"preset": "unipc-10"})
    assert [p.name for p in from_sampler.glob("*.safetensors")] == ["model.safetensors"]
    loaded = DDPMSampler.from_pretrained(from_sampler, use_ema=False)
    assert loaded.config.preset == "unipc-10" and loaded.config.method == "unipc"
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, sampler.model.state_dict()[key], atol=1e-3, rtol=1e-3)
    with pytest.raises(FileNotFoundError, match="EMA weights only.*use_ema=True"):
        DDPMSampler.from_pretrained(from_run, use_ema=False)
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        export_bundle(tmp_path / "nothing", tmp_path / "x")


def test_export_keeps_a_hand_written_card_and_refuses_float16_overflow(sampler: DDPMSampler, model_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "README.md").write_text("# my card\n")
    export_bundle(model_folder, out)
    assert (out / "README.md").read_text() == "# my card\n"
    generated = export_bundle(model_folder, tmp_path / "clevr-ddpm-tiny")
    card = (generated / "README.md").read_text()
    assert 'from_pretrained("clevr-ddpm-tiny")' in card
    with torch.no_grad():
        next(sampler.model.parameters())[0] = 1e6
    with pytest.raises(ValueError, match="float16 range"):
        export_bundle(sampler, tmp_path / "overflow")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_export_refuses_a_non_empty_folder_and_overwrite_replaces_it_whole(
    sampler: DDPMSampler, model_folder: Path, tmp_path: Path
) -> None:
    out = export_bundle(model_folder, tmp_path / "bundle", max_shard_bytes=40_000)
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    with pytest.raises(FileExistsError, match=f"{out} is not empty .*overwrite=True"):
        export_bundle(sampler, out)
    assert _snapshot(out) == before  # nothing deleted, nothing added
    export_bundle(sampler, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "sampler_config.json", "scheduler_config.json",
    ]  # fmt: skip
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left beside it
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        export_bundle(sampler, tmp_path / "file", overwrite=True)
    with pytest.raises(ValueError, match="not onto itself or a folder holding it"):
        export_bundle(model_folder, model_folder.parent, overwrite=True)  # would delete the source run
    assert (model_folder / "config.json").is_file()


def test_an_interrupted_overwrite_leaves_the_old_bundle_whole(
    model_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = export_bundle(model_folder, tmp_path / "bundle", max_shard_bytes=40_000)
    (out / "README.md").write_text("# my card\n")  # hand-written: kept by an overwrite
    before = _snapshot(out)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed")

    with monkeypatch.context() as patch:
        patch.setattr(pretrained, "write_model_card", crash)  # the last step of the export
        with pytest.raises(RuntimeError, match="killed"):
            export_bundle(model_folder, out, overwrite=True)
    assert _snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "run"]
    export_bundle(model_folder, out, overwrite=True)  # larger shards: one file, none of the old ones
    assert sorted(p.name for p in out.glob("model*")) == ["model_ema.safetensors"]
    assert (out / "README.md").read_text() == "# my card\n"


def test_a_misspelt_model_name_gets_a_suggestion(
    bundle_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    unknown = "is neither a model folder nor a bundled model"
    with pytest.raises(FileNotFoundError, match=f"'clevr-ddpm-smal' {unknown} \\(did you mean '{DEFAULT_MODEL}'\\?\\)"):
        DDPMSampler.from_pretrained("clevr-ddpm-smal")
    with pytest.raises(FileNotFoundError, match=f"'elsewhere' {unknown}; bundled models"):
        ConditionalUNet.from_pretrained("elsewhere")  # nothing close: no suggestion
    for command in (["sample", "--labels", "red cube"], ["evaluate", "--conditions", "test"], ["demo"]):
        assert main([*command, "--model", "clevr-ddpm-smal"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"did you mean '{DEFAULT_MODEL}'?" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resources", "run"]  # no output folder made for it


def test_registry_lists_only_bundled_folders_and_unknown_names_list_them(bundle_root: Path) -> None:
    (bundle_root / "half-copied").mkdir()  # no config.json: not a model (yet)
    assert list(pretrained.available_models()) == [DEFAULT_MODEL]
    assert bundled_model_dir() == bundle_root / DEFAULT_MODEL
    with pytest.raises(FileNotFoundError, match=f"'nope' is not a bundled model; bundled models: {DEFAULT_MODEL}"):
        bundled_model_dir("nope")
    with pytest.raises(FileNotFoundError, match=f"'clevr-ddpm-base' is not bundled with this installation.*{DEFAULT_MODEL}"):
        DDPMSampler.from_pretrained("clevr-ddpm-base")
    assert isinstance(pretrained.PRETRAINED_MODELS, dict)


def test_from_pretrained_without_a_name_loads_the_bundled_default(bundle_root: Path) -> None:
    expected = DDPMSampler.from_pretrained(bundled_model_dir())
    for sampler in (DDPMSampler.from_pretrained(), DDPMSampler.from_pretrained(DEFAULT_MODEL)):
        assert sampler.config == expected.config
        for key, value in sampler.model.state_dict().items():
            assert torch.equal(value, expected.model.state_dict()[key])
    unet = ConditionalUNet.from_pretrained()
    assert torch.equal(next(unet.parameters()), next(expected.model.parameters()))


def test_a_local_folder_wins_over_a_bundled_name(bundle_root: Path, tiny_unet: ConditionalUNet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "cwd"
    torch.manual_seed(5)
    other = ConditionalUNet(tiny_unet.config)
    DDPMSampler(other).save_pretrained(local / DEFAULT_MODEL)
    monkeypatch.chdir(local)
    loaded = DDPMSampler.from_pretrained(DEFAULT_MODEL)
    assert torch.equal(next(loaded.model.parameters()), next(other.parameters()))
    assert pretrained.resolve_model_name(DEFAULT_MODEL) == DEFAULT_MODEL


def test_cli_export_model(model_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    args = ["export-model", str(model_folder), str(out), "--max-shard-mib", "0.05", "--preset", "unipc-10", "--guidance", "2",
            "--output-size", "32"]
    assert main(args) == 0
    shards = sorted(out.glob("model_ema-*.safetensors"))
    assert len(shards) > 1 and all(_shard_data_bytes(p) <= 0.05 * 2**20 for p in shards)
    assert "bundled model:" in capsys.readouterr().out
    saved = json.loads((out / "sampler_config.json").read_text())["sampling"]
    assert (saved["preset"], saved["method"], saved["num_inference_steps"], saved["guidance_scale"]) == ("unipc-10", "unipc", None, 2.0)
    assert saved["output_size"] == 32
    assert main(["export-model", str(tmp_path / "missing"), str(tmp_path / "new")]) == 2


def test_cli_export_model_refuses_a_model_in_dest_unless_overwrite(
    model_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle"
    assert main(["export-model", str(model_folder), str(out), "--max-shard-mib", "0.05"]) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert main(["export-model", str(model_folder), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and "--overwrite" in err and "Traceback" not in err
    assert _snapshot(out) == before  # the weights already there are kept
    assert main(["export-model", str(model_folder), str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("model*")) == ["model_ema.safetensors"]


@pytest.mark.slow
def test_cli_sample_and_evaluate_default_to_the_bundled_model(bundle_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "--labels", "red cube", "--labels", "cyan sphere", "--preset", "unipc-10", "--out", "g.png"]) == 0
    assert (tmp_path / "g.png").is_file()
    assert main(["sample", "--model", DEFAULT_MODEL, "--labels", "red cube", "--steps", "2", "--out", "h.png"]) == 0
    assert main(["evaluate", "--conditions", "test", "--preset", "unipc-10", "--device", "cpu"]) == 0
    # Never into the installed package: a folder named after the model, here.
    assert (tmp_path / "evaluation" / DEFAULT_MODEL / "report.json").is_file()
    assert not (bundle_root / DEFAULT_MODEL / "evaluation").exists()


@pytest.mark.slow
def test_demo_draws_and_scores_both_files_with_the_bundled_model(bundle_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--output-dir", str(tmp_path / "demo")]) == 0
    text = capsys.readouterr().out
    assert "unipc, 10 steps" in text  # the model saves ddim-50: the demo takes the fast preset
    for name in ("test", "new_test"):
        assert (tmp_path / "demo" / f"{name}_grid.png").is_file()
        assert f"{name}.json: accuracy " in text


def test_demo_without_a_bundled_model_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bundled, "bundled_models_root", lambda: tmp_path / "empty")
    assert main(["demo", "--output-dir", str(tmp_path / "demo")]) == 2
    error = capsys.readouterr().err
    assert f"{DEFAULT_MODEL!r} is not bundled" in error and "demo --train" in error
    assert main(["demo", "--train", "--model", "x"]) == 2


def test_demo_train_option_runs_the_training_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    from clevr_diffusion.cli import build_parser, demo

    calls: list[int] = []
    monkeypatch.setattr(demo, "_train_and_sample", lambda args: calls.append(args.steps) or 0)
    assert main(["demo", "--train", "--steps", "7"]) == 0 and calls == [7]
    args = build_parser().parse_args(["demo"])
    assert (args.train, args.model, args.preset, args.guidance) == (False, None, None, None)


# ----------------------------------------------------------------- the real bundled weights
def test_every_shipped_bundle_is_float16_shards_under_15_mib() -> None:
    assert DEFAULT_MODEL in pretrained.available_models()
    default = DDPMSampler.from_pretrained()
    # Trained at 32 x 32, delivered at i-CLEVR's 64 x 64 with the fast sampler by default.
    assert default.model.config.sample_size == 32 and default.config.output_size == 64
    assert (default.config.preset, default.config.guidance_scale) == ("dpm++-20", 3.0)
    for folder in sorted(p for p in bundled_models_root().iterdir() if p.is_dir()):
        shards = sorted(folder.glob("*.safetensors"))
        assert shards and all(p.name.startswith(("model_ema-", "model-")) for p in shards), folder
        assert all(p.stat().st_size <= 15 * 2**20 + 2**16 and _shard_data_bytes(p) <= 15 * 2**20 for p in shards)
        for p in shards:
            with safe_open(str(p), framework="pt") as f:
                assert all(f.get_slice(k).get_dtype() in ("F16", "I64", "I32") for k in f.keys()), p
        ConditionalUNet.from_pretrained(folder)  # complete, strict keys
        # In the Hugging Face layout: huggingface_hub alone loads the shards through their index.
        assert (folder / "model_ema.safetensors.index.json").is_file(), folder
        network = ConditionalUNet.from_config(json.loads((folder / "config.json").read_text()))
        loaded = load_torch_model(network, folder, strict=False, filename_pattern="model_ema{suffix}.safetensors")
        assert not loaded.missing_keys and not loaded.unexpected_keys  # strict=False: see above


def test_bundles_from_before_the_index_still_load(tmp_path: Path) -> None:
    """Bundles exported before the Hugging Face index existed hold the shards alone; they load alike."""
    shipped = bundled_model_dir()
    old = tmp_path / "old-bundle"
    shutil.copytree(shipped, old, ignore=shutil.ignore_patterns("*.index.json"))
    assert not list(old.glob("*.index.json")) and len(list(old.glob("model_ema-*.safetensors"))) == 2
    legacy, current = DDPMSampler.from_pretrained(old), DDPMSampler.from_pretrained()
    assert legacy.config == current.config
    for key, value in current.model.state_dict().items():
        assert torch.equal(legacy.model.state_dict()[key], value)
    next(old.glob("model_ema-00002-*.safetensors")).unlink()
    with pytest.raises(FileNotFoundError, match="incomplete set of model_ema weight shards: missing model_ema-00002-of-00002"):
        ConditionalUNet.from_pretrained(old)


@pytest.mark.slow
def test_demo_with_the_shipped_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--output-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    for name in ("test", "new_test"):
        assert (tmp_path / f"{name}_grid.png").is_file()
        accuracy = float(text.split(f"{name}.json: accuracy ")[1].split()[0])
        assert accuracy > 0.5, text  # chance is about 0.13; 5 draws gave 0.57-0.68
