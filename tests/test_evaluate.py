"""evaluate: the i-CLEVR deliverables, the report and the command, on a tiny untrained model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clevr_diffusion import DDPMSampler, NoiseConfig, SamplingConfig, Vocabulary, load_conditions
from clevr_diffusion.cli import main
from clevr_diffusion.evaluation import ClevrEvaluator
from clevr_diffusion.evaluation.evaluate import DENOISING_LABELS, EvaluationResult, evaluate

from conftest import TINY_UNET

SIZE = TINY_UNET.sample_size  # the tiny model draws 16 px images
SAMPLE = dict(method="ddim", num_inference_steps=2, progress=False)
FAST = dict(SAMPLE, device="cpu")  # evaluate() would pick CUDA where there is one


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved sampler folder: tiny untrained UNet, T = 20, DDIM 2 steps by default."""
    from clevr_diffusion import ConditionalUNet

    torch.manual_seed(0)
    unet = ConditionalUNet(TINY_UNET)
    for p in unet.parameters():  # non-trivial weights so images depend on the labels
        torch.nn.init.normal_(p, std=0.05)
    defaults = SamplingConfig(method="ddim", num_inference_steps=2)
    sampler = DDPMSampler(unet, NoiseConfig(num_train_timesteps=20), defaults)
    return sampler.save_pretrained(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="module")
def judge() -> ClevrEvaluator:
    torch.manual_seed(1)
    return ClevrEvaluator(pretrained=False)


@pytest.fixture(scope="module")
def evaluated(model_dir: Path, judge: ClevrEvaluator, tmp_path_factory: pytest.TempPathFactory) -> EvaluationResult:
    return evaluate(model_dir, tmp_path_factory.mktemp("eval"), evaluator=judge, **FAST)


def _read(path: Path) -> torch.Tensor:
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1


def _grid_size(count: int, nrow: int, tile: int, padding: int = 2) -> tuple[int, int]:
    """(width, height) of a make_grid of ``count`` tiles."""
    rows = -(-count // nrow)
    return nrow * (tile + padding) + padding, rows * (tile + padding) + padding


@pytest.mark.slow
def test_writes_every_deliverable_in_order(evaluated: EvaluationResult) -> None:
    out = evaluated.output_dir
    for name in ("test", "new_test"):
        folder = out / "images" / name
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{i}.png" for i in range(32))
        assert all(Image.open(folder / f"{i}.png").size == (SIZE, SIZE) for i in range(32))
        grid = Image.open(out / f"{name}_grid.png")
        assert grid.size == _grid_size(32, 8, SIZE)  # 8 a row, 4 rows, 2 px borders
        # The grid's first tile is image 0 and its last tile image 31.
        tiles = _read(out / f"{name}_grid.png")
        assert torch.equal(tiles[:, 2 : 2 + SIZE, 2 : 2 + SIZE], _read(folder / "0.png"))
        last = 2 + 3 * (SIZE + 2), 2 + 7 * (SIZE + 2)
        assert torch.equal(tiles[:, last[0] : last[0] + SIZE, last[1] : last[1] + SIZE], _read(folder / "31.png"))
    assert (out / "report.json").is_file() and (out / "report.md").is_file()
    assert not list(out.rglob("*.tmp"))  # atomic writes leave nothing behind


@pytest.mark.slow
def test_saved_images_are_the_samplers_draw(evaluated: EvaluationResult, model_dir: Path) -> None:
    sampler = DDPMSampler.from_pretrained(model_dir)
    images = sampler.sample(load_conditions("new_test"), seed=0, **SAMPLE).images
    saved = torch.stack([_read(evaluated.output_dir / "images" / "new_test" / f"{i}.png") for i in range(32)])
    assert (saved - images).abs().max() <= 1 / 127.5 + 1e-6  # equal up to 8-bit rounding


def test_denoising_row_has_at_least_8_frames(evaluated: EvaluationResult) -> None:
    frames = evaluated.denoising_frame_steps
    assert len(frames) >= 8 and frames[0] == 0 and frames == sorted(set(frames))
    # With 2 steps the row cannot come from the test draw: a separate draw with enough steps.
    assert evaluated.denoising_source == "separate draw"
    assert Image.open(evaluated.denoising).size == _grid_size(len(frames), len(frames), SIZE)


@pytest.mark.slow
def test_denoising_row_is_test_25_when_steps_allow(model_dir: Path, judge: ClevrEvaluator, tmp_path: Path) -> None:
    assert sorted(load_conditions("test")[25]) == sorted(DENOISING_LABELS)
    result = evaluate(
        model_dir, tmp_path, evaluator=judge, files=("test",), method="ddim", num_inference_steps=10, progress=False, device="cpu"
    )
    assert result.denoising_source == "images/test/25.png"
    assert len(result.denoising_frame_steps) == 10 and result.denoising_frame_steps[-1] == 10
    row = _read(result.denoising)
    last = 2 + 9 * (SIZE + 2)
    assert torch.equal(row[:, 2 : 2 + SIZE, last : last + SIZE], _read(tmp_path / "images" / "test" / "25.png"))
    assert list(result.files) == ["test"] and not (tmp_path / "new_test_grid.png").exists()


def test_report_json_matches_the_saved_pngs(evaluated: EvaluationResult, judge: ClevrEvaluator) -> None:
    report = json.loads((evaluated.output_dir / "report.json").read_text())
    assert report == json.loads(json.dumps(evaluated.to_dict()))
    assert report["evaluator"] == "random"
    assert report["sampling"] == {
        "method": "ddim", "num_inference_steps": 2, "guidance_scale": 1.0, "guidance_rescale": 0.0,
        "guidance_mode": "joint", "preset": None, "compile": False, "image_size": SIZE, "device": "cpu",
    }
    assert report["seeds"] == [0] and report["model"] == str(evaluated.model)
    assert report["denoising"]["path"] == "denoising.png" and report["denoising"]["frames"] >= 8
    vocabulary = Vocabulary.default()
    for name, labels in (("test", 72), ("new_test", 84)):
        entry = report["files"][name]
        assert entry["conditions"] == 32 and entry["labels"] == labels
        assert entry["images"] == f"images/{name}" and entry["grid"] == f"{name}_grid.png"
        acc = entry["label_accuracy"]
        assert 0 <= acc["mean"] <= 1 and acc["per_seed"] == [acc["mean"]] and acc["std"] is None
        assert 0 <= entry["image_accuracy"]["mean"] <= 1
        assert sum(v["labels"] for v in entry["by_count"].values()) == labels
        assert len(entry["seconds"]["sample"]) == len(entry["seconds"]["evaluate"]) == 1
        # Re-scoring the PNGs on disk gives exactly the reported numbers.
        images = torch.stack([_read(evaluated.output_dir / "images" / name / f"{i}.png") for i in range(32)])
        rescored = judge.accuracy(images, vocabulary.encode_batch(load_conditions(name)))
        assert rescored.label_accuracy == acc["mean"] == evaluated[name].accuracy
        assert rescored.hits == entry["first_seed"]["hits"] and rescored.total == labels
        assert rescored.image_accuracy == entry["image_accuracy"]["mean"]


def test_report_md_and_summary(evaluated: EvaluationResult) -> None:
    text = (evaluated.output_dir / "report.md").read_text()
    for needle in ("test_grid.png", "new_test_grid.png", "denoising.png", "| test.json |", "| new_test.json |"):
        assert needle in text
    summary = str(evaluated)
    assert "test.json" in summary and "new_test.json" in summary and f"{evaluated['test'].accuracy:.3f}" in summary


@pytest.mark.slow
def test_seeds_give_mean_and_spread(
    model_dir: Path, judge: ClevrEvaluator, tmp_path: Path, evaluated: EvaluationResult
) -> None:
    result = evaluate(model_dir, tmp_path, evaluator=judge, seeds=2, **FAST)
    for name in ("test", "new_test"):
        f = result[name]
        assert f.seeds == [0, 1] and len(f.label_accuracies) == 2
        assert f.label_accuracies[0] == evaluated[name].accuracy  # the first draw is seed 0's
        assert f.accuracy == pytest.approx(np.mean(f.label_accuracies))
        assert f.std == pytest.approx(np.std(f.label_accuracies, ddof=1))
        entry = json.loads((tmp_path / "report.json").read_text())["files"][name]["label_accuracy"]
        assert entry["per_seed"] == f.label_accuracies and entry["min"] == min(f.label_accuracies)
        assert sum(total for _, total in f.by_count.values()) == 2 * f.labels
    # The saved images are the first draw's.
    for i in (0, 31):
        a, b = tmp_path / "images/test" / f"{i}.png", evaluated.output_dir / "images/test" / f"{i}.png"
        assert a.read_bytes() == b.read_bytes()
    assert "±" in str(result) and "per seed" in (tmp_path / "report.md").read_text()


@pytest.mark.slow
def test_accepts_a_sampler_object(model_dir: Path, judge: ClevrEvaluator, tmp_path: Path) -> None:
    sampler = DDPMSampler.from_pretrained(model_dir)
    result = evaluate(sampler, tmp_path, evaluator=judge, files=("new_test",), **FAST)
    assert result.model is None and list(result.files) == ["new_test"]
    assert json.loads((tmp_path / "report.json").read_text())["model"] is None


def test_bad_arguments_fail_clearly(model_dir: Path, judge: ClevrEvaluator, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seeds"):
        evaluate(model_dir, tmp_path, evaluator=judge, seeds=0, **FAST)
    with pytest.raises(FileNotFoundError, match="model folder"):
        evaluate(tmp_path / "missing", tmp_path, evaluator=judge, **FAST)
    with pytest.raises(ValueError, match="different names"):
        evaluate(model_dir, tmp_path, evaluator=judge, files=("test", "test.json"), **FAST)
    with pytest.raises(ValueError, match="exceeds"):
        evaluate(model_dir, tmp_path, evaluator=judge, **{**FAST, "num_inference_steps": 50})


# ----------------------------------------------------------------------------------- the command
CLI_FAST = ["--method", "ddim", "--steps", "2", "--device", "cpu"]


@pytest.fixture
def random_bundled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``ClevrEvaluator()`` give random weights (the bundled ones may not be built)."""
    original = ClevrEvaluator.__init__

    def init(self: ClevrEvaluator, pretrained: bool = True, device: str | torch.device | None = None) -> None:
        original(self, pretrained=False, device=device)

    monkeypatch.setattr(ClevrEvaluator, "__init__", init)


@pytest.mark.slow
def test_cli_end_to_end(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], random_bundled: None
) -> None:
    out = tmp_path / "eval"
    assert main(["-q", "evaluate", "--model", str(model_dir), "--out", str(out), *CLI_FAST]) == 0
    printed = capsys.readouterr().out
    for needle in ("test.json", "new_test.json", "accuracy", "denoising", "report.md", "time:"):
        assert needle in printed
    assert len(list((out / "images" / "test").glob("*.png"))) == 32
    report = json.loads((out / "report.json").read_text())
    assert report["evaluator"] == "random" and set(report["files"]) == {"test", "new_test"}


@pytest.mark.slow
def test_cli_sampling_flags_reach_the_report(model_dir: Path, tmp_path: Path, random_bundled: None) -> None:
    out = tmp_path / "eval"
    flags = ["--preset", "unipc-10", "--steps", "2", "--guidance", "2", "--guidance-rescale", "0.5",
             "--guidance-mode", "composable", "--conditions", "test", "--device", "cpu"]  # fmt: skip
    assert main(["-q", "evaluate", "--model", str(model_dir), "--out", str(out), *flags]) == 0
    sampling = json.loads((out / "report.json").read_text())["sampling"]
    assert sampling == {
        "method": "unipc", "num_inference_steps": 2, "guidance_scale": 2.0, "guidance_rescale": 0.5,
        "guidance_mode": "composable", "preset": "unipc-10", "compile": False, "image_size": SIZE, "device": "cpu",
    }
    assert "preset unipc-10" in (out / "report.md").read_text()
    sampler = DDPMSampler.from_pretrained(model_dir)
    expected = sampler.sample(
        load_conditions("test"), preset="unipc-10", num_inference_steps=2, guidance_scale=2.0,
        guidance_rescale=0.5, guidance_mode="composable", seed=0, progress=False,
    ).images  # fmt: skip
    for i in (0, 31):
        saved = ((expected[i].clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1
        torch.testing.assert_close(_read(out / "images" / "test" / f"{i}.png"), saved, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_cli_default_output_folder_and_seeds(
    model_dir: Path, capsys: pytest.CaptureFixture[str], random_bundled: None
) -> None:
    args = ["evaluate", "--model", str(model_dir), *CLI_FAST, "--seeds", "2", "--seed", "5", "--conditions", "test"]
    assert main(args) == 0
    report = json.loads((model_dir / "evaluation" / "report.json").read_text())
    assert report["seeds"] == [5, 6] and list(report["files"]) == ["test"]
    assert "±" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_official_evaluator(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "checkpoint.pth"
    torch.save({"model": ClevrEvaluator(pretrained=False).state_dict()}, checkpoint)
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(model_dir), "--out", str(out), "--evaluator", "official",
            "--checkpoint", str(checkpoint), "--conditions", "new_test", *CLI_FAST]  # fmt: skip
    assert main(args) == 0
    assert json.loads((out / "report.json").read_text())["evaluator"] == "official"
    assert "new_test.json" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_evaluator_file(model_dir: Path, tmp_path: Path) -> None:
    weights = ClevrEvaluator(pretrained=False).save(tmp_path / "evaluator.safetensors")
    out = tmp_path / "eval"
    args = ["evaluate", "--model", str(model_dir), "--out", str(out), "--evaluator", str(weights),
            "--conditions", "test", *CLI_FAST]  # fmt: skip
    assert main(args) == 0
    assert json.loads((out / "report.json").read_text())["evaluator"] == "file"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--evaluator", "official"], "--evaluator official needs --checkpoint"),
        (["--evaluator", "bundled", "--checkpoint", "x.pth"], "--checkpoint is the official evaluator's"),
        (["--evaluator", "official", "--checkpoint", "missing.pth"], "no evaluator checkpoint"),
        (["--evaluator", "checkpoint.pth"], "--evaluator official --checkpoint"),
    ],
)
def test_cli_bad_evaluator_options_are_one_line_errors(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code = main(["evaluate", "--model", str(model_dir), "--out", str(tmp_path / "eval"), *CLI_FAST, *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("clevr-diffusion evaluate: error: ") and message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "eval").exists()  # nothing sampled before the options were checked


def test_cli_seeds_below_one_is_a_one_line_usage_error(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", "--model", str(model_dir), "--out", str(tmp_path / "eval"), *CLI_FAST, "--seeds", "0"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "argument --seeds: expected a positive integer" in err and err.count("\n") == 1
    assert not (tmp_path / "eval").exists()


def test_cli_missing_bundled_weights_is_a_one_line_error(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import clevr_diffusion.evaluation.evaluator as evaluator_module

    monkeypatch.setattr(evaluator_module, "bundled_weights_dir", lambda: tmp_path / "nowhere")
    code = main(["evaluate", "--model", str(model_dir), "--out", str(tmp_path / "eval"), *CLI_FAST])
    err = capsys.readouterr().err
    assert code == 2 and "bundled evaluator weights are missing" in err and err.count("\n") == 1


def test_cli_missing_model_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], random_bundled: None
) -> None:
    code = main(["evaluate", "--model", str(tmp_path / "nomodel"), *CLI_FAST])
    err = capsys.readouterr().err
    assert code == 2 and "is not a model folder" in err and err.count("\n") == 1


@pytest.mark.slow
def test_cli_evaluates_a_model_by_hub_repo_id(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, random_bundled: None
) -> None:
    import os

    from clevr_diffusion.hub import push_folder

    from hub_server import HubServer

    server = HubServer(port=int(os.environ["HF_ENDPOINT"].rsplit(":", 1)[1])).start()
    try:
        push_folder(model_dir, "user/evaluated")
        monkeypatch.chdir(tmp_path)
        assert main(["-q", "evaluate", "--model", "user/evaluated", *CLI_FAST, "--conditions", "test"]) == 0
    finally:
        server.stop()
    report = json.loads((tmp_path / "evaluation" / "user--evaluated" / "report.json").read_text())
    assert report["model"] == "user/evaluated"
