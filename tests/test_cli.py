"""The clevr-diffusion command end to end on a tiny data set and model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from clevr_diffusion import TrainerConfig
from clevr_diffusion.cli import build_parser, main


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    assert main(["make-toy-data", str(root), "--scenes", "12", "--size", "32,24"]) == 0
    return root


@pytest.fixture(scope="module")
def trained(toy_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    args = [
        "train", "--data", str(toy_data), "--output-dir", str(run), "--image-size", "16",
        "--base-channels", "8", "--channel-mults", "1,2", "--attention-stages", "1",
        "--steps", "4", "--batch-size", "4", "--warmup-steps", "1", "--timesteps", "50",
        "--beta-schedule", "squaredcos_cap_v2", "--checkpoint-every", "2", "--sample-every", "-1",
        "--log-every", "1",
    ]
    assert main(args) == 0
    return run


def test_help_lists_every_command() -> None:
    text = build_parser().format_help()
    commands = ("demo", "train", "sample", "make-toy-data", "render-scenes", "make-dataset", "export-model")
    for command in commands:
        assert command in text
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0


def test_module_entry_point_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "clevr_diffusion.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("clevr-diffusion ")


def test_make_toy_data_writes_an_iclevr_folder(toy_data: Path) -> None:
    labels = json.loads((toy_data / "train.json").read_text())
    assert all((toy_data / name).is_file() for name in labels)
    assert Image.open(toy_data / next(iter(labels))).size == (32, 24)


@pytest.mark.slow
def test_train_writes_a_loadable_run(trained: Path) -> None:
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    config = json.loads((trained / "model" / "scheduler_config.json").read_text())
    assert config["num_train_timesteps"] == 50 and config["beta_schedule"] == "squaredcos_cap_v2"
    assert (trained / "loss.png").is_file()


@pytest.mark.slow
def test_train_resumes_when_run_again(trained: Path, toy_data: Path) -> None:
    args = [
        "train", "--data", str(toy_data), "--output-dir", str(trained), "--image-size", "16",
        "--base-channels", "8", "--channel-mults", "1,2", "--attention-stages", "1",
        "--steps", "6", "--batch-size", "4", "--warmup-steps", "1", "--timesteps", "50",
        "--beta-schedule", "squaredcos_cap_v2", "--checkpoint-every", "2", "--sample-every", "-1", "--log-every", "1",
    ]
    assert main(args) == 0
    rows = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]


def test_sample_writes_grid_images_and_trajectory(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([
        "sample", "--model", str(trained / "model"), "--labels", "red cube", "--labels", "Blue Sphere,  gray cylinder",
        "--method", "ddim", "--steps", "3", "--out", str(tmp_path / "grid.png"), "--images-dir", str(tmp_path / "images"),
        "--trajectory", str(tmp_path / "traj.png"),
    ])
    assert code == 0
    assert Image.open(tmp_path / "grid.png").size == (2 * 18 + 2, 18 + 2)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["0.png", "1.png"]
    assert (tmp_path / "traj.png").is_file()
    assert "grid:" in capsys.readouterr().out


def test_sample_a_condition_file(trained: Path, tmp_path: Path) -> None:
    code = main(["sample", "--model", str(trained / "model"), "--conditions", "new_test", "--method", "dpm++", "--steps", "2", "--out", str(tmp_path / "g.png")])
    assert code == 0
    assert Image.open(tmp_path / "g.png").size == (8 * 18 + 2, 4 * 18 + 2)


@pytest.mark.slow
def test_sample_with_a_preset_and_guidance_flags(trained: Path, tmp_path: Path) -> None:
    """--preset, --guidance-rescale and --guidance-mode reach the sampler: the PNGs are its images."""
    import numpy as np

    from clevr_diffusion import DDPMSampler
    from clevr_diffusion.utils.images import to_uint8

    labels = [["red cube", "blue sphere"], ["gray cylinder"]]
    flags = ["--preset", "ddim-50", "--guidance", "3", "--guidance-rescale", "0.5", "--guidance-mode", "composable", "--seed", "4"]
    code = main([
        "sample", "--model", str(trained / "model"), "--labels", "red cube, blue sphere", "--labels", "gray cylinder",
        "--out", str(tmp_path / "grid.png"), "--images-dir", str(tmp_path / "images"), *flags,
    ])
    assert code == 0
    sampler = DDPMSampler.from_pretrained(trained / "model")
    settings = dict(preset="ddim-50", guidance_scale=3.0, seed=4, progress=False)
    expected = sampler.sample(labels, guidance_rescale=0.5, guidance_mode="composable", **settings).images
    for i in range(2):
        saved = np.asarray(Image.open(tmp_path / "images" / f"{i}.png"))
        assert np.array_equal(saved, to_uint8(expected[i]).permute(1, 2, 0).numpy())
    plain = sampler.sample(labels, **settings).images
    assert not np.array_equal(to_uint8(plain).numpy(), to_uint8(expected).numpy())  # the flags mattered


def test_sampling_flags_parse(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(["sample", "--model", str(tmp_path), "--labels", "red cube", "--preset", "unipc-10", "--compile"])
    assert (args.preset, args.compile, args.guidance_rescale, args.guidance_mode) == ("unipc-10", True, None, None)
    assert parser.parse_args(["sample", "--model", str(tmp_path), "--labels", "red cube"]).compile is False
    with pytest.raises(SystemExit):
        parser.parse_args(["sample", "--model", str(tmp_path), "--labels", "red cube", "--preset", "euler-5"])


def test_bad_input_is_a_one_line_error(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", "--model", str(trained / "model"), "--labels", "pink cube", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "pink cube" in err and "Traceback" not in err
    assert main(["sample", "--model", str(tmp_path / "missing"), "--labels", "red cube"]) == 2
    assert "config.json" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "nothing"), "--output-dir", str(tmp_path / "r")]) == 2
    assert "train.json" in capsys.readouterr().err



@pytest.mark.slow
def test_train_on_rendered_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    args = [
        "train", "--render-data", "2", "--supersample", "1", "--output-dir", str(run), "--image-size", "16",
        "--base-channels", "8", "--channel-mults", "1,2", "--attention-stages", "1", "--steps", "2",
        "--batch-size", "4", "--warmup-steps", "1", "--timesteps", "50", "--sample-every", "-1", "--log-every", "1",
    ]
    assert main(args) == 0
    assert (run / "model" / "config.json").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert TrainerConfig.load(run / "trainer_config.json").time_limit_s is None
    assert main([*args, "--skip-broken"]) == 2
    assert "--data folders" in capsys.readouterr().err
    # --preload keeps rendered frames; --time-limit ends the run early, as at --steps.
    cached = tmp_path / "cached"
    assert main([*args, "--output-dir", str(cached), "--preload", "--num-workers", "2", "--steps", "50", "--time-limit", "0.0001"]) == 0
    assert 1 <= len((cached / "metrics.jsonl").read_text().splitlines()) < 50 and (cached / "model" / "config.json").is_file()
    for source in ([], ["--data", str(tmp_path), "--render-data", "2"]):
        with pytest.raises(SystemExit):
            main(["train", *source, "--output-dir", str(run)])

REFERENCE_SCENES = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "blender" / "scenes.json"


def test_render_scenes_names_sizes_and_resume(tmp_path: Path) -> None:
    if not REFERENCE_SCENES.is_file():
        pytest.skip("../shared/reference is not available")
    import numpy as np
    import torch

    from clevr_diffusion.render import load_scenes, render

    scenes = json.loads(REFERENCE_SCENES.read_text())[:2]
    given = tmp_path / "scenes.json"
    given.write_text(json.dumps([scenes[0], {k: v for k, v in scenes[1].items() if k != "file"}]))
    out = tmp_path / "out"
    args = ["render-scenes", str(given), str(out), "--width", "32", "--height", "24", "--supersample", "1"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "000001.png"]  # `file` name, else index
    first = np.array(Image.open(out / "000.png"))
    assert first.shape == (24, 32, 3)
    expected = render(load_scenes(given)[0], 32, 24, "native", 1, seed=0, scene_offset=0).images[0]
    assert torch.equal(torch.from_numpy(first).permute(2, 0, 1), (expected * 255).round().to(torch.uint8))
    (out / "000001.png").unlink()
    before = (out / "000.png").stat().st_mtime_ns
    assert main(args) == 0  # resumes: renders only the missing image
    assert (out / "000001.png").is_file() and (out / "000.png").stat().st_mtime_ns == before


def test_train_speed_and_recipe_flags_reach_the_configs() -> None:
    from clevr_diffusion.cli.train import recipe
    from clevr_diffusion.training.recipe import Recipe

    base = ["train", "--data", "iclevr"]
    defaults = recipe(build_parser().parse_args(base))
    config = defaults.trainer
    assert config.mixed_precision == "auto" and config.tf32 and config.fused_optimizer is None
    assert not config.channels_last and not config.compile and config.snr_gamma is None
    # No option given: the library's defaults, bar the run folder.
    assert defaults == Recipe().override({"trainer.output_dir": "runs/clevr-ddpm"})
    args = build_parser().parse_args([
        *base, "--snr-gamma", "5", "--mixed-precision", "bf16", "--no-tf32", "--compile", "--channels-last",
        "--no-fused-optimizer", "--prediction-type", "v_prediction", "--beta-schedule", "scaled_linear",
        "--timesteps", "400", "--base-channels", "64",
    ])
    chosen = recipe(args)
    config = chosen.trainer
    assert (config.snr_gamma, config.mixed_precision, config.tf32) == (5.0, "bf16", False)
    assert config.compile and config.channels_last and config.fused_optimizer is False
    assert recipe(build_parser().parse_args([*base, "--fused-optimizer"])).trainer.fused_optimizer is True
    noise = chosen.noise
    assert (noise.prediction_type, noise.beta_schedule, noise.num_train_timesteps) == ("v_prediction", "scaled_linear", 400)
    assert chosen.unet.base_channels == 64
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--mixed-precision", "fp8"])


def test_train_recipe_options_and_set_win_in_order(tmp_path: Path) -> None:
    from clevr_diffusion.cli.train import recipe
    from clevr_diffusion.training.recipe import get_recipe

    base = ["train", "--data", "iclevr", "--recipe", "cpu-small"]
    preset = get_recipe("cpu-small")
    chosen = recipe(build_parser().parse_args(base))
    assert chosen == preset  # the preset as it is (its run folder is the command's default too)
    chosen = recipe(build_parser().parse_args([
        *base, "--lr", "1e-3", "--set", "trainer.learning_rate=3e-4", "--set", "noise.beta_schedule=linear",
        "--set", "unet.attention_stages=[1,2]",
    ]))
    assert chosen.trainer.learning_rate == 3e-4  # --set comes last
    assert chosen.noise.beta_schedule == "linear" != preset.noise.beta_schedule and chosen.unet.attention_stages == (1, 2)
    assert chosen.image_size == 32 and chosen.noise.prediction_type == "v_prediction"  # the rest is the preset's
    saved = tmp_path / "recipe.json"
    chosen.save(saved)
    assert recipe(build_parser().parse_args(["train", "--data", "x", "--recipe", str(saved)])).trainer.learning_rate == 3e-4


# ------------------------------------------------------------------ user errors: one line, before any work
def _one_line_error(capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    """The captured stderr, checked to be one error line holding every ``expected`` text."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("clevr-diffusion") and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every command's first real work (loading a model, building data, rendering) fail the test."""
    import clevr_diffusion.evaluation.evaluate  # noqa: F401 (the module; the package's `evaluate` is the function)
    from clevr_diffusion import DDPMSampler
    from clevr_diffusion.cli import train as train_command
    from clevr_diffusion.data import toy
    from clevr_diffusion.render import dataset_writer, scene

    def work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the command started working before checking its options")

    # The commands import the library inside `run`, so the library's own functions are patched.
    monkeypatch.setattr(DDPMSampler, "from_pretrained", work)
    monkeypatch.setattr(sys.modules["clevr_diffusion.evaluation.evaluate"], "load_evaluator", work)
    monkeypatch.setattr(train_command, "_dataset", work)
    monkeypatch.setattr(toy, "make_toy_dataset", work)
    monkeypatch.setattr(scene, "load_scenes", work)
    monkeypatch.setattr(dataset_writer, "make_dataset", work)


def test_output_paths_are_checked_before_any_work(
    no_work: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, file = tmp_path / "folder", tmp_path / "file.txt"
    folder.mkdir()
    file.write_text("x")
    sample = ["sample", "--model", str(tmp_path / "model"), "--labels", "red cube"]
    is_file = "is a file, not a folder"
    cases = [
        ([*sample, "--out", str(folder)], f"--out {folder} is a folder"),
        ([*sample, "--out", str(file / "grid.png")], f"{file} {is_file}"),
        ([*sample, "--out", str(tmp_path / "g.png"), "--images-dir", str(file)], f"--images-dir {file} {is_file}"),
        ([*sample, "--trajectory", str(folder)], f"--trajectory {folder} is a folder"),
        (["evaluate", "--model", str(tmp_path / "model"), "--out", str(file)], f"--out {file} {is_file}"),
        (["demo", "--output-dir", str(file)], f"--output-dir {file} {is_file}"),
        (["demo", "--train", "--output-dir", str(file / "sub")], f"{file} {is_file}"),
        (["train", "--data", str(tmp_path), "--output-dir", str(file)], f"--output-dir {file} {is_file}"),
        (["make-toy-data", str(file)], f"{file} {is_file}"),
        (["render-scenes", str(tmp_path / "scenes.json"), str(file)], f"{file} {is_file}"),
        (["make-dataset", str(file)], f"{file} {is_file}"),
    ]
    for args, problem in cases:
        assert main(args) == 2, args
        _one_line_error(capsys, problem)


def test_an_unwritable_output_folder_is_refused_before_any_work(
    no_work: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root writes anywhere: let the folder say no
        access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and access(path, mode))
    try:
        assert main(["sample", "--labels", "red cube", "--out", str(locked / "new" / "grid.png")]) == 2
        _one_line_error(capsys, f"no permission to write into {locked}")
        assert main(["evaluate", "--out", str(locked)]) == 2
        _one_line_error(capsys, f"no permission to write into {locked}")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(
    "command",
    [
        ["sample", "--labels", "red cube"],
        ["evaluate"],
        ["render-scenes", "scenes.json", "out"],
        ["make-dataset", "out"],
        ["train-evaluator", "out"],
    ],
)
def test_device_cuda_without_cuda_is_one_line(
    command: list[str], no_work: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([*command, "--device", "cuda"]) == 2
    err = _one_line_error(capsys)
    assert err == f"clevr-diffusion {command[0]}: error: CUDA is not available on this machine; use --device cpu\n"
    assert main([*command, "--device", "gpu"]) == 2
    _one_line_error(capsys, "'gpu' is not a torch device")


def test_non_positive_counts_are_one_line_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        ["sample", "--labels", "red cube", "--nrow", "0"],
        ["sample", "--labels", "red cube", "--upscale", "-1"],
        ["sample", "--labels", "red cube", "--steps", "0"],
        ["evaluate", "--seeds", "0"],
        ["demo", "--train", "--scenes", "0"],
        ["make-toy-data", "out", "--scenes", "0"],
        ["render-scenes", "s.json", "out", "--width", "0"],
        ["make-dataset", "out", "--supersample", "0"],
        ["train-evaluator", "out", "--batch-size", "0"],
        ["export-model", "src", "dest", "--max-shard-mib", "0"],
    ]
    for args in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2, args
        _one_line_error(capsys, f"argument {args[-2]}", f"got '{args[-1]}'", f"clevr-diffusion {args[0]} --help")


def test_debug_shows_the_traceback_and_bugs_keep_theirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from clevr_diffusion.cli import sample

    args = ["sample", "--labels", "red cube", "--out", str(tmp_path)]
    assert main(args) == 2
    _one_line_error(capsys, "is a folder")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        main(["--debug", *args])

    def bug(args: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(sample, "run", bug)
    with pytest.raises(RuntimeError, match="a bug"):  # not a user error: the traceback stays
        main(["sample", "--labels", "red cube"])


HEAVY_MODULES = ("torch", "diffusers", "accelerate", "huggingface_hub", "numpy", "PIL")


def test_help_imports_no_heavy_library() -> None:
    """`--help` and usage errors answer in well under a second: neither imports torch and co."""
    for argv in (["--help"], ["sample", "--nrow", "0"]):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "clevr_diffusion.cli", *argv], capture_output=True, text=True
        )
        assert done.returncode == (0 if argv == ["--help"] else 2), done.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
        assert not imported & set(HEAVY_MODULES), sorted(imported & set(HEAVY_MODULES))
    code = "import json, sys; from clevr_diffusion.cli import build_parser; build_parser(); print(json.dumps(list(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not set(json.loads(loaded)) & set(HEAVY_MODULES)


def test_public_names_load_on_first_use() -> None:
    """The lazy packages still offer every name of their `__all__`, the same objects as their modules'."""
    import clevr_diffusion
    import clevr_diffusion.evaluation
    import clevr_diffusion.render
    from clevr_diffusion.evaluation.evaluate import evaluate

    for package in (clevr_diffusion, clevr_diffusion.evaluation, clevr_diffusion.render):
        for name in package.__all__:
            assert getattr(package, name) is not None, (package.__name__, name)
        assert set(package.__all__) <= set(dir(package))
    # Importing the submodule `evaluate` must not shadow the function of the same name.
    assert clevr_diffusion.evaluation.evaluate is evaluate
    with pytest.raises(AttributeError):
        clevr_diffusion.no_such_name  # noqa: B018
