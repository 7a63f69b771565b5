"""DDPMTrainer end to end on a tiny model: learning, checkpoints, exact resume, kill -9, processes."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler
from torch.utils.data import DataLoader

from clevr_diffusion import CheckpointMismatchError, ConditionalUNet, DDPMSampler, DDPMTrainer, TrainerConfig
from clevr_diffusion.models.serialization import load_safetensors
from clevr_diffusion.training import trainer as trainer_module
from clevr_diffusion.training.checkpoint import list_checkpoints
from clevr_diffusion.training.data_order import EpochBatchSampler
from clevr_diffusion.training.ema import EMA
from clevr_diffusion.utils import hardware

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY_UNET  # noqa: E402
from train_worker import NOISE, build  # noqa: E402

WORKER = Path(__file__).parent / "train_worker.py"


def losses(trainer: DDPMTrainer) -> list[float]:
    return [row["loss"] for row in trainer.metrics()]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> DDPMTrainer:
    """An uninterrupted 30-step run that the resume tests compare against."""
    trainer = build(str(tmp_path_factory.mktemp("reference")), 30)
    trainer.train()
    return trainer


@pytest.mark.slow
def test_loss_goes_down_and_outputs_are_written(reference_run: DDPMTrainer) -> None:
    curve = losses(reference_run)
    assert len(curve) == 30
    assert sum(curve[-5:]) / 5 < 0.8 * sum(curve[:5]) / 5
    out = reference_run.output_dir
    for name in ("trainer_config.json", "noise_config.json", "metrics.jsonl", "loss.png", "model/config.json"):
        assert (out / name).is_file(), name
    assert [p.name for p in list_checkpoints(out / "checkpoints")][-1] == "step_00000030"
    assert TrainerConfig.load(out / "trainer_config.json") == reference_run.config


@pytest.mark.slow
def test_finished_model_loads_and_samples(reference_run: DDPMTrainer) -> None:
    sampler = DDPMSampler.from_pretrained(reference_run.model_dir)
    assert same_weights(sampler.model.state_dict(), reference_run.ema.state_dict())
    raw = DDPMSampler.from_pretrained(reference_run.model_dir, use_ema=False)
    assert same_weights(raw.model.state_dict(), reference_run.model.state_dict())
    out = sampler.sample([["red cube"], ["blue sphere", "gray cylinder"]], method="ddim", num_inference_steps=5, seed=0, progress=False)
    assert out.images.shape == (2, 3, 16, 16)


@pytest.mark.slow
def test_resume_matches_an_uninterrupted_run(reference_run: DDPMTrainer, tmp_path: Path) -> None:
    build(str(tmp_path), 17).train()  # stops between two checkpoints' steps
    resumed = build(str(tmp_path), 30)
    resumed.train()
    assert losses(resumed) == losses(reference_run)
    assert same_weights(resumed.model.state_dict(), reference_run.model.state_dict())
    assert same_weights(resumed.ema.state_dict(), reference_run.ema.state_dict())


@pytest.mark.slow
def test_time_limit_stops_early_and_resumes_exactly(reference_run: DDPMTrainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clevr_diffusion.training import trainer as trainer_module

    # A fake clock that moves 1 s per reading makes the stopping step deterministic.
    ticks = iter(range(10**6))
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: float(next(ticks)))
    limited = build(str(tmp_path), 30)
    limited.config = limited.config.replace(time_limit_s=12.5)
    limited.train()
    stopped = limited.step
    assert 1 < stopped < 30
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")][-1] == f"step_{stopped:08d}"
    assert (tmp_path / "model" / "config.json").is_file() and len(losses(limited)) == stopped
    monkeypatch.undo()
    resumed = build(str(tmp_path), 30)
    resumed.train()
    assert losses(resumed) == losses(reference_run)
    assert same_weights(resumed.ema.state_dict(), reference_run.ema.state_dict())


@pytest.mark.slow
def test_stop_at_pauses_and_resumes_exactly(reference_run: DDPMTrainer, tmp_path: Path) -> None:
    paused = build(str(tmp_path), 30)
    paused.train(stop_at=13)
    assert paused.step == 13 and len(losses(paused)) == 13
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")][-1] == "step_00000013"
    saved = DDPMSampler.from_pretrained(tmp_path / "model")
    assert same_weights(saved.model.state_dict(), paused.ema.state_dict())  # model/ is step 13's
    assert TrainerConfig.load(tmp_path / "trainer_config.json").max_steps == 30  # the schedule is untouched
    build(str(tmp_path), 30).train(stop_at=22)
    resumed = build(str(tmp_path), 30)
    resumed.train()
    assert losses(resumed) == losses(reference_run)
    assert same_weights(resumed.ema.state_dict(), reference_run.ema.state_dict())
    assert not (tmp_path / "config_changes.jsonl").exists()  # nothing about the run changed
    with pytest.raises(trainer_module.RunFolderError, match="already at step 30, past stop_at = 20"):
        build(str(tmp_path), 30).train(stop_at=20)
    with pytest.raises(ValueError, match=r"stop_at must be in \[1, max_steps = 30\], got 31"):
        build(str(tmp_path), 30).train(stop_at=31)


@pytest.mark.slow
def test_kill_9_loses_nothing(reference_run: DDPMTrainer, tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, str(WORKER), str(tmp_path), "30", "0.004"])
    try:
        deadline = time.time() + 120
        while not list_checkpoints(tmp_path / "checkpoints") or list_checkpoints(tmp_path / "checkpoints")[-1].name < "step_00000010":
            assert process.poll() is None, "the worker ended before it could be killed"
            assert time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    done = list_checkpoints(tmp_path / "checkpoints")
    assert done and int(done[-1].name.split("_")[1]) < 30
    resumed = build(str(tmp_path), 30)
    resumed.train()
    assert losses(resumed) == losses(reference_run)
    assert same_weights(resumed.ema.state_dict(), reference_run.ema.state_dict())
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp")]


@pytest.mark.slow
def test_resume_with_another_model_fails_clearly(reference_run: DDPMTrainer, tmp_path: Path) -> None:
    shutil.copytree(reference_run.output_dir / "checkpoints", tmp_path / "checkpoints")
    other = ConditionalUNet(base_channels=16, channel_mults=(1, 2), attention_stages=(), sample_size=16)
    trainer = DDPMTrainer(other, build(str(tmp_path), 40).dataset, output_dir=str(tmp_path), max_steps=40, batch_size=8)
    with pytest.raises(CheckpointMismatchError, match="another model configuration"):
        trainer.train()


def test_checkpoint_contents(reference_run: DDPMTrainer) -> None:
    folder = list_checkpoints(reference_run.output_dir / "checkpoints")[-1]
    names = {p.name for p in folder.iterdir()}
    assert names == {
        "model.safetensors", "ema.safetensors", "optimizer.safetensors", "rng_0.safetensors",
        "scheduler_config.json", "state.json",
    }
    assert DDPMScheduler.from_pretrained(folder).config.num_train_timesteps == 100
    state = json.loads((folder / "state.json").read_text())
    assert state["step"] == 30 and state["ema_updates"] == 30
    assert state["noise_config"]["num_train_timesteps"] == 100


@pytest.mark.slow
def test_gradient_accumulation_and_bad_data(tmp_path: Path, tiny_unet, colour_dataset) -> None:  # type: ignore[no-untyped-def]
    trainer = DDPMTrainer(
        tiny_unet, colour_dataset, output_dir=str(tmp_path), max_steps=3, batch_size=4, gradient_accumulation_steps=2,
        sample_every=-1, log_every=1, warmup_steps=0,
    )
    trainer.train()
    assert len(losses(trainer)) == 3
    with pytest.raises(ValueError, match="downsampling factor"):
        DDPMTrainer(tiny_unet, [(torch.zeros(3, 15, 16), torch.zeros(24))], output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="fewer than one global batch"):
        DDPMTrainer(tiny_unet, colour_dataset, output_dir=str(tmp_path / "x"), batch_size=100, max_steps=1).train()


def test_label_dropout_is_applied(tiny_unet, colour_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    seen: list[torch.Tensor] = []
    trainer = DDPMTrainer(tiny_unet, colour_dataset, output_dir=str(tmp_path), max_steps=1, batch_size=64, label_dropout=0.5, sample_every=-1)
    hook = tiny_unet.register_forward_hook(lambda m, args, out: seen.append(args[2]))
    trainer.train()
    hook.remove()
    dropped = (seen[0].sum(dim=1) == 0).float().mean().item()
    assert 0.25 < dropped < 0.75
    assert torch.equal(seen[0][seen[0].sum(dim=1) > 0].sum(dim=1), torch.ones(int((seen[0].sum(dim=1) > 0).sum())))


@pytest.mark.slow
@pytest.mark.parametrize("flip", [True, False])
def test_random_flip(tiny_unet, tmp_path: Path, flip: bool) -> None:  # type: ignore[no-untyped-def]
    images = torch.linspace(-1, 1, 16).expand(64, 3, 16, 16).clone()  # a left-to-right ramp
    images += torch.arange(64).view(64, 1, 1, 1) * 1e-3  # tell the images apart
    dataset = torch.utils.data.TensorDataset(images, torch.eye(24)[torch.arange(64) % 24])
    trainer = DDPMTrainer(tiny_unet, dataset, output_dir=str(tmp_path), max_steps=1, batch_size=64, random_flip=flip, sample_every=-1)
    clean: list[torch.Tensor] = []
    add_noise = trainer.noise.add_noise
    trainer.noise.add_noise = lambda x0, noise, t: clean.append(x0) or add_noise(x0, noise, t)  # type: ignore[method-assign]
    trainer.train()
    x0 = clean[0]
    flipped = (x0[:, 0, 0, 0] > x0[:, 0, 0, -1]).float().mean().item()
    assert (0.25 < flipped < 0.75) if flip else flipped == 0.0
    # Every image is one of the data set's, as it is or mirrored.
    originals = {round(v, 4) for v in images[:, 0, 0, 0].tolist()}
    assert {round(v, 4) for v in x0.amin(dim=(1, 2, 3)).tolist()} <= originals


def test_bf16_mixed_precision_on_cpu(tiny_unet, colour_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    dtypes: list[torch.dtype] = []
    trainer = DDPMTrainer(tiny_unet, colour_dataset, output_dir=str(tmp_path), max_steps=2, batch_size=8, mixed_precision="bf16", sample_every=-1, log_every=1)
    hook = tiny_unet.output_conv.register_forward_hook(lambda m, args, out: dtypes.append(out.dtype))
    monkeypatch.setattr(hardware, "cpu_runs_bf16", lambda: False)  # as on an AVX2-only CPU
    with caplog.at_level(logging.WARNING, logger="clevr_diffusion.training.trainer"):
        trainer.train()
    hook.remove()
    assert [r.message for r in caplog.records if "bfloat16 instructions" in r.message]  # told it will be slow
    assert dtypes and set(dtypes) == {torch.bfloat16}  # autocast ran the convolutions in bf16
    assert all(p.dtype == torch.float32 for p in tiny_unet.parameters())  # master weights stay fp32
    assert all(math.isfinite(r["loss"]) for r in trainer.metrics())
    assert trainer.mixed_precision == "bf16"


@pytest.mark.slow
def test_periodic_sample_grids(tiny_unet, colour_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trainer = DDPMTrainer(
        tiny_unet, colour_dataset, output_dir=str(tmp_path), max_steps=4, batch_size=8, sample_every=2,
        sample_steps=2, num_sample_images=8,
    )
    trainer.train()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_00000002.png", "step_00000004.png"]


def test_data_made_on_a_gpu_is_read_in_the_main_process(tiny_unet, colour_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    loaders: list[dict[str, object]] = []

    def recording_loader(*args, **kwargs):  # type: ignore[no-untyped-def]
        loaders.append(kwargs)
        return DataLoader(*args, **dict(kwargs, num_workers=0))

    monkeypatch.setattr(trainer_module, "DataLoader", recording_loader)
    for device, workers in (("cpu", 2), ("cuda", 0)):
        colour_dataset.device = device  # as RenderedClevrDataset(device=...) has; items stay on the CPU
        DDPMTrainer(tiny_unet, colour_dataset, output_dir=str(tmp_path / device), max_steps=1, batch_size=8,
                    num_workers=2, sample_every=-1).train()
        assert loaders[-1]["num_workers"] == workers and loaders[-1]["pin_memory"] is False


def test_epoch_batch_sampler_shards_and_resumes() -> None:
    ranks = [EpochBatchSampler(40, 4, world_size=2, rank=r, seed=1) for r in range(2)]
    epoch0 = [list(s) for s in ranks]
    assert len(epoch0[0]) == len(epoch0[1]) == 5
    seen = [i for batches in epoch0 for batch in batches for i in batch]
    assert sorted(seen) == list(range(40))  # the two processes split the epoch
    ranks[0].set_position(1, 3)
    later = list(ranks[0])
    ranks[0].set_position(1, 0)
    assert later == list(ranks[0])[3:]


def test_ema_average() -> None:
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # first update: decay min(0.5, 1/10) = 0.1
    torch.testing.assert_close(ema.model.weight, start + 0.9)
    ema.update(model)  # decay min(0.5, 2/11) = 2/11
    torch.testing.assert_close(ema.model.weight, start + 1 - 0.1 * 2 / 11)


@pytest.mark.slow
def test_two_processes_with_accelerate_launch(tmp_path: Path) -> None:
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate's launcher is installed with the package"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    command = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", str(WORKER), str(tmp_path),
    ]
    first = subprocess.run([*command, "6"], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = list_checkpoints(tmp_path / "checkpoints")[-1]
    assert {"rng_0.safetensors", "rng_1.safetensors"} <= {p.name for p in checkpoint.iterdir()}
    assert json.loads((checkpoint / "state.json").read_text())["num_processes"] == 2
    second = subprocess.run([*command, "10"], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 11))  # one writer, no duplicate lines
    assert (tmp_path / "model" / "model_ema.safetensors").is_file()


# --------------------------------------------------------------------------- speed options
def quick(model: ConditionalUNet, data, out: Path, steps: int, **options) -> DDPMTrainer:  # type: ignore[no-untyped-def]
    """A few steps of the tiny model, every step logged, no sample grids."""
    settings = dict(max_steps=steps, batch_size=8, sample_every=-1, log_every=1, warmup_steps=0, checkpoint_every=2)
    return DDPMTrainer(model, data, NOISE, output_dir=str(out), **{**settings, **options})


def loads_strictly(path: Path) -> None:
    """The weights file holds exactly a fresh tiny ConditionalUNet's keys."""
    ConditionalUNet(TINY_UNET).load_state_dict(load_safetensors(path), strict=True)


def test_speed_options_round_trip_and_old_configs_load(tmp_path: Path) -> None:
    config = TrainerConfig(mixed_precision="bf16", tf32=False, fused_optimizer=True, channels_last=True, compile=True, snr_gamma=5)
    config.save(tmp_path / "trainer_config.json")
    loaded = TrainerConfig.load(tmp_path / "trainer_config.json")
    assert loaded == config and isinstance(loaded.snr_gamma, float)
    # A trainer_config.json written before these fields existed loads with their defaults.
    old = {k: v for k, v in TrainerConfig(mixed_precision="no").to_dict().items()
           if k not in ("tf32", "fused_optimizer", "channels_last", "compile", "snr_gamma")}
    restored = TrainerConfig.from_dict(old)
    assert restored.mixed_precision == "no" and restored.tf32 and restored.fused_optimizer is None
    assert not restored.channels_last and not restored.compile and restored.snr_gamma is None
    assert TrainerConfig().mixed_precision == "auto"
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainerConfig(mixed_precision="fp8")
    with pytest.raises(ValueError, match="snr_gamma"):
        TrainerConfig(snr_gamma=0.0)


def test_automatic_choices_per_device() -> None:
    auto = TrainerConfig()
    assert auto.resolve_mixed_precision("cuda", bf16_supported=True) == "bf16"
    assert auto.resolve_mixed_precision("cuda", bf16_supported=False) == "no"
    assert auto.resolve_mixed_precision("cpu", bf16_supported=True) == "no"
    assert TrainerConfig(mixed_precision="fp16").resolve_mixed_precision("cpu", False) == "fp16"
    assert auto.use_fused_optimizer("cuda") and not auto.use_fused_optimizer("cpu")
    assert TrainerConfig(fused_optimizer=True).use_fused_optimizer("cpu")
    assert not TrainerConfig(fused_optimizer=False).use_fused_optimizer("cuda")


def test_cpu_defaults_leave_speed_options_off(tiny_unet, colour_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trainer = quick(tiny_unet, colour_dataset, tmp_path, 1, cpu=True)
    assert trainer.mixed_precision == "no" and trainer.accelerator.device.type == "cpu"
    assert not trainer._make_optimizer().param_groups[0]["fused"]


@pytest.mark.slow
def test_fused_adamw_resumes_exactly_and_either_way(colour_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def run(out: Path, steps: int, fused: bool | None) -> DDPMTrainer:
        torch.manual_seed(0)
        trainer = quick(ConditionalUNet(TINY_UNET), colour_dataset, out, steps, fused_optimizer=fused, cpu=True)
        trainer.train()
        return trainer

    straight = run(tmp_path / "straight", 4, True)
    run(tmp_path / "resumed", 2, True)
    resumed = run(tmp_path / "resumed", 4, True)
    assert losses(resumed) == losses(straight)
    assert same_weights(resumed.model.state_dict(), straight.model.state_dict())
    # A checkpoint of the unfused optimiser resumes with the fused kernel the config asks for.
    run(tmp_path / "switch", 2, False)
    torch.manual_seed(0)
    switched = quick(ConditionalUNet(TINY_UNET), colour_dataset, tmp_path / "switch", 4, fused_optimizer=True, cpu=True)
    optimizer = switched._make_optimizer()
    switched._load_checkpoint(list_checkpoints(tmp_path / "switch" / "checkpoints")[-1], optimizer)
    assert optimizer.param_groups[0]["fused"] is True
    first = next(iter(optimizer.state.values()))
    assert first["step"].dtype == torch.float32 and int(first["step"]) == 2
    switched.train()
    assert len(losses(switched)) == 4 and all(math.isfinite(x) for x in losses(switched))


@pytest.mark.slow
def test_channels_last_training(colour_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def run(out: Path, channels_last: bool) -> tuple[DDPMTrainer, list[bool]]:
        torch.manual_seed(0)
        model = ConditionalUNet(TINY_UNET)
        layouts: list[bool] = []
        hook = model.input_conv.register_forward_hook(
            lambda m, args, out: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
        )
        trainer = quick(model, colour_dataset, out, 3, channels_last=channels_last)
        trainer.train()
        hook.remove()
        return trainer, layouts

    plain, _ = run(tmp_path / "plain", False)
    nhwc, layouts = run(tmp_path / "nhwc", True)
    assert layouts and all(layouts)
    assert all(p.is_contiguous() for p in nhwc.model.parameters())  # handed back in the usual layout
    assert losses(nhwc) == pytest.approx(losses(plain), rel=1e-4)
    loads_strictly(nhwc.model_dir / "model.safetensors")
    loads_strictly(nhwc.model_dir / "model_ema.safetensors")


@pytest.mark.slow
def test_compiled_run_saves_plain_keys_and_resumes(colour_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # Dynamo's "eager" backend traces and wraps the model exactly as inductor does (the
    # `_orig_mod` wrapper whose keys must not leak) but skips C++ code generation, which takes
    # minutes on a 2-core CPU; test_inductor_compiled_run covers inductor itself.
    compiled: list[torch.nn.Module] = []
    real_compile = torch.compile

    def eager_compile(model: torch.nn.Module) -> torch.nn.Module:
        compiled.append(real_compile(model, backend="eager"))
        return compiled[-1]

    monkeypatch.setattr(trainer_module.torch, "compile", eager_compile)
    torch._dynamo.reset()
    torch.manual_seed(0)
    trainer = quick(ConditionalUNet(TINY_UNET), colour_dataset, tmp_path, 2, compile=True)
    trainer.train()
    assert compiled and hasattr(compiled[0], "_orig_mod")
    assert not [k for k in trainer.ema.state_dict() if "_orig_mod" in k]
    loads_strictly(trainer.model_dir / "model.safetensors")
    loads_strictly(trainer.model_dir / "model_ema.safetensors")
    checkpoint = list_checkpoints(tmp_path / "checkpoints")[-1]
    loads_strictly(checkpoint / "model.safetensors")
    loads_strictly(checkpoint / "ema.safetensors")
    torch.manual_seed(0)
    resumed = quick(ConditionalUNet(TINY_UNET), colour_dataset, tmp_path, 4, compile=True)
    resumed.train()
    assert [r["step"] for r in resumed.metrics()] == [1, 2, 3, 4]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None, reason="torch.compile (inductor) on the CPU needs a C++ compiler (cc)")
@pytest.mark.skipif(
    os.environ.get("CLEVR_DIFFUSION_TEST_INDUCTOR") != "1",
    reason="inductor compiles the tiny UNet in about 140 s on the 2-core development machine, over the "
    "suite's budget; set CLEVR_DIFFUSION_TEST_INDUCTOR=1 to run it",
)
def test_inductor_compiled_run(colour_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch._dynamo.reset()
    torch.manual_seed(0)
    trainer = quick(ConditionalUNet(TINY_UNET), colour_dataset, tmp_path, 2, compile=True)
    trainer.train()
    loads_strictly(trainer.model_dir / "model.safetensors")
    loads_strictly(trainer.model_dir / "model_ema.safetensors")


def test_snr_gamma_reaches_the_loss(tiny_unet, colour_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trainer = quick(tiny_unet, colour_dataset, tmp_path, 2, snr_gamma=5.0)
    gammas: list[float | None] = []
    training_loss = trainer.noise.training_loss

    def recording_loss(*args, snr_gamma=None):  # type: ignore[no-untyped-def]
        gammas.append(snr_gamma)
        return training_loss(*args, snr_gamma=snr_gamma)

    trainer.noise.training_loss = recording_loss  # type: ignore[method-assign]
    trainer.train()
    assert gammas == [5.0, 5.0]
    assert all(math.isfinite(x) for x in losses(trainer))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_defaults_bf16_tf32_fused_and_options(colour_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    trainer = quick(ConditionalUNet(TINY_UNET), colour_dataset, tmp_path, 4, channels_last=True, snr_gamma=5.0)
    assert trainer.accelerator.device.type == "cuda"
    assert trainer.mixed_precision == ("bf16" if torch.cuda.is_bf16_supported() else "no")
    assert trainer._make_optimizer().param_groups[0]["fused"] is True
    trainer.train()
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert all(math.isfinite(x) for x in losses(trainer))
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    loads_strictly(trainer.model_dir / "model_ema.safetensors")
    torch.manual_seed(0)
    resumed = quick(ConditionalUNet(TINY_UNET), colour_dataset, tmp_path, 6, channels_last=True, snr_gamma=5.0)
    resumed.train()
    assert [r["step"] for r in resumed.metrics()] == list(range(1, 7))


@pytest.mark.parametrize(("name", "machines", "processes"), [("multi_gpu.yaml", 1, 8), ("multi_node.yaml", 2, 16)])
def test_example_accelerate_configs(name: str, machines: int, processes: int) -> None:
    import yaml
    from accelerate.commands.config.config_args import ClusterConfig

    path = Path(__file__).resolve().parents[1] / "examples" / "accelerate" / name
    raw = yaml.safe_load(path.read_text())
    assert {"compute_environment", "distributed_type", "num_processes", "num_machines", "mixed_precision"} <= raw.keys()
    config = ClusterConfig.from_yaml_file(str(path))  # what `accelerate launch --config_file` reads; rejects unknown keys
    assert config.distributed_type == "MULTI_GPU" and config.compute_environment == "LOCAL_MACHINE"
    assert (config.num_machines, config.num_processes, config.mixed_precision) == (machines, processes, "bf16")
    if machines > 1:
        assert config.main_process_ip and config.main_process_port and config.machine_rank == 0


def test_one_learning_rate_schedule_for_every_trainer() -> None:
    from clevr_diffusion.training.schedule import learning_rate_at

    config = TrainerConfig(max_steps=100, learning_rate=1e-3, warmup_steps=10, lr_schedule="cosine")
    assert [config.learning_rate_at(s) for s in range(100)] == [learning_rate_at(s, 1e-3, 10, 100, "cosine") for s in range(100)]
    assert learning_rate_at(0, 1.0, 10, 100) == pytest.approx(0.1) and learning_rate_at(9, 1.0, 10, 100) == 1.0
    assert learning_rate_at(55, 1.0, 10, 100, "cosine") == pytest.approx(0.5)  # half way down the cosine
    assert learning_rate_at(99, 1.0, 10, 100, "cosine") < 1e-3 and learning_rate_at(99, 1.0, 10, 100) == 1.0
    assert learning_rate_at(0, 2.0, 0, 10, "cosine") == 2.0  # no warm-up
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'"):
        learning_rate_at(0, 1.0, 0, 10, "linear")
