"""The CUDA code paths: skipped on machines without a GPU, never faked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clevr_diffusion import DDPMSampler, DDPMTrainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_training_and_sampling_on_cuda(tiny_unet, colour_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trainer = DDPMTrainer(
        tiny_unet, colour_dataset, output_dir=str(tmp_path), max_steps=4, batch_size=16,
        mixed_precision="bf16", sample_every=-1, log_every=1, checkpoint_every=2,
    )
    assert trainer.accelerator.device.type == "cuda"
    model_dir = trainer.train()
    assert len(trainer.metrics()) == 4
    sampler = DDPMSampler.from_pretrained(model_dir, device="cuda")
    a = sampler.sample([["red cube"], ["cyan sphere"]], method="dpm++", seed=0, progress=False).images
    b = sampler.sample([["red cube"], ["cyan sphere"]], method="dpm++", seed=0, progress=False).images
    assert a.device.type == "cpu" and a.shape == (2, 3, 16, 16)
    torch.testing.assert_close(a, b)


def test_cuda_and_cpu_start_from_the_same_noise(tiny_unet) -> None:  # type: ignore[no-untyped-def]
    cpu = DDPMSampler(tiny_unet).sample([["red cube"]], method="ddim", num_inference_steps=1, seed=0, return_trajectory=True, progress=False)
    gpu = DDPMSampler(tiny_unet.cuda()).sample([["red cube"]], method="ddim", num_inference_steps=1, seed=0, return_trajectory=True, progress=False)
    assert torch.equal(cpu.trajectory[0], gpu.trajectory[0])


def test_evaluator_trains_on_cuda_in_bf16(tmp_path: Path) -> None:
    from clevr_diffusion.evaluation import ClevrEvaluator, EvaluatorTrainingConfig, train_evaluator

    config = EvaluatorTrainingConfig(
        output_dir=str(tmp_path), num_images=16, batch_size=8, max_steps=3, supersample=1,
        device="cuda", mixed_precision="bf16", workers=2,
    )  # fmt: skip
    path = train_evaluator(config, progress=False)
    weights = ClevrEvaluator.from_file(path).state_dict()
    assert all(torch.isfinite(v.float()).all() for v in weights.values())


def test_rendered_cache_on_cuda_matches_rendering_each_time() -> None:
    from clevr_diffusion import RenderedClevrDataset

    plain = RenderedClevrDataset(num_scenes=2, image_size=16, supersample=1, device="cuda")
    cached = RenderedClevrDataset(num_scenes=2, image_size=16, supersample=1, device="cuda", cache=True)
    for _ in range(2):  # the second read comes from the cache
        for (a, la), (b, lb) in zip(plain.__getitems__([0, 3, 5]), cached.__getitems__([0, 3, 5]), strict=True):
            assert a.device.type == "cuda" and torch.equal(a, b) and torch.equal(la, lb)
