"""The training step's speed contract: no host-device sync between log steps, batches by
index gather, a steady-state speed figure, channels-last and cuDNN settings on CUDA."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from clevr_diffusion import ClevrDataset, ConditionalUNet, DDPMTrainer, NoiseConfig, RenderedClevrDataset, TrainerConfig
from clevr_diffusion.data.toy import make_toy_dataset
from clevr_diffusion.training.data_order import EpochBatchSampler
from clevr_diffusion.training.ema import EMA

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY_UNET  # noqa: E402

NOISE = NoiseConfig(num_train_timesteps=50)
QUIET = dict(warmup_steps=2, sample_every=-1, checkpoint_every=0, batch_size=4)

# Every way a tensor's value reaches the host: on a GPU each waits for the device to finish.
_HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "nonzero")


@contextmanager
def count_host_reads() -> Iterator[Counter[str]]:
    """Count calls of the `_HOST_READS` tensor methods and of ``torch.tensor`` (a host-to-device
    copy of Python data when given a device) while the block runs."""
    counts: Counter[str] = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in _HOST_READS}
    # Methods torch.Tensor inherits from its C base are deleted again afterwards rather than
    # set: a copy in torch.Tensor's own dict would change how Python dispatches them.
    inherited = {name for name in _HOST_READS if name not in vars(torch.Tensor)}
    original_tensor = torch.tensor

    def counting(name: str, method):  # type: ignore[no-untyped-def]
        def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            counts[name] += 1
            return method(self, *args, **kwargs)

        return wrapper

    def counting_tensor(*args, **kwargs):  # type: ignore[no-untyped-def]
        counts["torch.tensor"] += 1
        return original_tensor(*args, **kwargs)

    try:
        for name, method in originals.items():
            setattr(torch.Tensor, name, counting(name, method))
        torch.tensor = counting_tensor  # type: ignore[assignment]
        yield counts
    finally:
        for name, method in originals.items():
            if name in inherited:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, method)
        torch.tensor = original_tensor  # type: ignore[assignment]


@pytest.fixture(scope="module")
def toy_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), num_scenes=8, width=32, height=24, progress=False)


def preloaded(folder: Path) -> ClevrDataset:
    return ClevrDataset(folder, image_size=16, preload=True)


def rendered() -> RenderedClevrDataset:
    return RenderedClevrDataset(num_scenes=4, image_size=16, supersample=1, cache=True)


def train(dataset, output_dir: Path, max_steps: int, **settings) -> DDPMTrainer:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    trainer = DDPMTrainer(ConditionalUNet(TINY_UNET), dataset, NOISE, output_dir=str(output_dir), max_steps=max_steps, **{**QUIET, **settings})
    trainer.train()
    return trainer


@pytest.mark.slow
@pytest.mark.parametrize("source", ["preloaded", "rendered"])
def test_steps_between_log_steps_read_nothing_back(source: str, toy_folder: Path, tmp_path: Path) -> None:
    """Four more steps between the same log steps add no host read at all (data, noise, forward,
    backward, clipping, AdamW, EMA and the time-limit check included)."""
    make = (lambda: preloaded(toy_folder)) if source == "preloaded" else rendered
    # Fused AdamW, as on CUDA: the CPU foreach kernel reads each step count back (a CPU tensor).
    settings = dict(log_every=1000, gradient_accumulation_steps=2, time_limit_s=3600.0, fused_optimizer=True)
    totals = []
    for steps in (3, 7):
        dataset = make()
        dataset.make_resident()  # the first pass (rendering, decoding) is not a training step
        with count_host_reads() as counts:
            train(dataset, tmp_path / f"run{steps}", steps, **settings)
        totals.append(counts)
    assert totals[0] == totals[1], f"steps {totals[1] - totals[0]} more host reads"
    assert totals[0]["item"] >= 1  # the counting works: the final log step reads the loss


@pytest.mark.slow
def test_gathered_batches_are_the_data_loaders(toy_folder: Path, tmp_path: Path) -> None:
    """Index gathers give exactly the batches a DataLoader over the same items gives."""
    gathered = train(preloaded(toy_folder), tmp_path / "gather", 6, log_every=1)
    loaded_data = ClevrDataset(toy_folder, image_size=16)
    assert gathered._gathers() and not loaded_data.can_gather
    loaded = train(loaded_data, tmp_path / "loader", 6, log_every=1)
    assert [r["loss"] for r in gathered.metrics()] == [r["loss"] for r in loaded.metrics()]
    for key, value in gathered.model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key


@pytest.mark.slow
def test_gathered_run_resumes_exactly(toy_folder: Path, tmp_path: Path) -> None:
    """A run read by gathers, stopped after 3 steps (mid-epoch) and resumed, is the run that never stopped."""
    whole = train(preloaded(toy_folder), tmp_path / "whole", 7, log_every=1, checkpoint_every=3)
    train(preloaded(toy_folder), tmp_path / "parts", 3, log_every=1, checkpoint_every=3)
    resumed = train(preloaded(toy_folder), tmp_path / "parts", 7, log_every=1, checkpoint_every=3)
    assert [r["loss"] for r in resumed.metrics()] == [r["loss"] for r in whole.metrics()]
    for key, value in whole.ema.state_dict().items():
        assert torch.equal(value, resumed.ema.state_dict()[key]), key


@pytest.mark.slow
def test_rendered_cache_trains_like_uncached_rendering(tmp_path: Path) -> None:
    cached = train(rendered(), tmp_path / "cached", 3, log_every=1)
    assert cached.dataset.num_cached == len(cached.dataset)  # rendered up front, before step 1
    uncached = train(RenderedClevrDataset(num_scenes=4, image_size=16, supersample=1), tmp_path / "plain", 3, log_every=1)
    assert [r["loss"] for r in cached.metrics()] == [r["loss"] for r in uncached.metrics()]


def test_epoch_batches_are_the_iterated_batches() -> None:
    for rank in range(2):
        sampler = EpochBatchSampler(23, 3, world_size=2, rank=rank, seed=5)
        sampler.set_position(4)
        assert sampler.epoch_batches(4).tolist() == list(sampler)
        assert sampler.epoch_batches(4).shape == (3, 3)


@pytest.mark.slow
def test_logged_speed_leaves_out_checkpoints(colour_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """images_per_s and step_ms describe training steps, not the checkpoint written between them."""
    real = DDPMTrainer.save_checkpoint

    def slow_checkpoint(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(1.0)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DDPMTrainer, "save_checkpoint", slow_checkpoint)
    trainer = train(colour_dataset, tmp_path, 6, log_every=2, checkpoint_every=2)
    rows = trainer.metrics()
    assert [r["step"] for r in rows] == [2, 4, 6]
    # Steps of this tiny model take milliseconds: a window that counted a 1 s checkpoint would
    # report over 500 ms a step.
    assert all(r["step_ms"] < 500 for r in rows[1:]), rows
    assert all(abs(r["images_per_s"] * r["step_ms"] / 1000 - 4) < 1e-6 for r in rows)


def test_ema_copy_follows_the_models_memory_format(colour_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """With channels_last, the EMA update sees both models in one layout (foreach fast path),
    and both are handed back contiguous."""
    seen = []
    real = EMA.update

    def checking_update(self, model):  # type: ignore[no-untyped-def]
        seen.extend(s.stride() == p.stride() for s, p in zip(self.model.parameters(), model.parameters(), strict=True))
        return real(self, model)

    monkeypatch.setattr(EMA, "update", checking_update)
    trainer = train(colour_dataset, tmp_path, 2, channels_last=True, log_every=1)
    assert seen and all(seen)
    assert trainer.model.input_conv.weight.is_contiguous() and trainer.ema.model.input_conv.weight.is_contiguous()


def test_channels_last_is_the_cuda_default() -> None:
    config = TrainerConfig()
    assert config.channels_last is None and config.cudnn_benchmark
    assert config.use_channels_last("cuda") and not config.use_channels_last("cpu")
    assert not config.replace(channels_last=False).use_channels_last("cuda")
    assert TrainerConfig.from_dict({**config.to_dict(), "channels_last": False}).channels_last is False


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("source", ["preloaded", "rendered", "loader"])
def test_cuda_steps_between_log_steps_never_synchronise(source: str, toy_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA, torch's sync debug mode raises on any synchronising call inside a training step."""
    dataset = {
        "preloaded": lambda: preloaded(toy_folder),
        "rendered": lambda: RenderedClevrDataset(num_scenes=4, image_size=16, supersample=1, cache=True, device="cuda"),
        "loader": lambda: ClevrDataset(toy_folder, image_size=16),
    }[source]()
    real_step = DDPMTrainer._train_step
    calls = []

    def strict_step(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.step < 2:  # cuDNN's autotuning and the first allocations may synchronise
            return real_step(self, *args, **kwargs)
        torch.cuda.set_sync_debug_mode("error")
        try:
            calls.append(self.step)
            return real_step(self, *args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(DDPMTrainer, "_train_step", strict_step)
    trainer = train(dataset, tmp_path, 8, log_every=4)
    assert calls == [2, 3, 4, 5, 6, 7]
    assert torch.backends.cudnn.benchmark
    assert trainer._channels_last
