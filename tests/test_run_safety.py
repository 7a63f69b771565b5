"""Nothing lost, nothing silent: the trainer's run folder under restarts, divergence, changed
settings and interrupted writes."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
import torch

from clevr_diffusion import (
    CheckpointMismatchError,
    ConditionalUNet,
    DDPMSampler,
    DDPMTrainer,
    DivergenceError,
    NoiseConfig,
    RunFolderError,
)
from clevr_diffusion.models.serialization import load_safetensors
from clevr_diffusion.training.checkpoint import list_checkpoints

sys.path.insert(0, str(Path(__file__).parent))
from conftest import TINY_UNET, LabelledColours  # noqa: E402

NOISE = NoiseConfig(num_train_timesteps=50)
SETTINGS = dict(batch_size=4, warmup_steps=2, sample_every=-1, checkpoint_every=2, keep_checkpoints=1, log_every=1)


def trainer(output_dir: Path, max_steps: int, noise: NoiseConfig = NOISE, **settings) -> DDPMTrainer:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return DDPMTrainer(
        ConditionalUNet(TINY_UNET), LabelledColours(), noise, output_dir=str(output_dir), max_steps=max_steps,
        **{**SETTINGS, **settings},
    )  # fmt: skip


def steps_logged(run: DDPMTrainer) -> list[int]:
    return [row["step"] for row in run.metrics()]


@pytest.mark.slow
def test_starting_afresh_over_a_run_is_refused_unless_told_to_overwrite(tmp_path: Path) -> None:
    trainer(tmp_path, 6).train()
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    with pytest.raises(RunFolderError, match=r"holds an earlier run \(last checkpoint: step 6\).*overwrite"):
        trainer(tmp_path, 3).train(resume=False)
    # Untouched: the old run's metrics and checkpoints are all there.
    assert steps_logged(trainer(tmp_path, 6)) == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before

    fresh = trainer(tmp_path, 3)
    fresh.train(resume=False, overwrite=True)
    assert steps_logged(fresh) == [1, 2, 3]
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_00000003"]
    # A later resume continues the new run, exactly like a run that never stopped.
    resumed = trainer(tmp_path, 5)
    resumed.train()
    whole = trainer(tmp_path / "whole", 5)
    whole.train()
    assert [r["loss"] for r in resumed.metrics()] == [r["loss"] for r in whole.metrics()]


def poison_after(step: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the weights NaN after optimiser step ``step`` (between log steps)."""
    real = DDPMTrainer._train_step

    def step_then_poison(self, model, *args):  # type: ignore[no-untyped-def]
        losses = real(self, model, *args)
        if self.step + 1 == step:  # self.step counts the steps before this one
            with torch.no_grad():
                self._unwrap(model).output_conv.weight.fill_(float("nan"))
        return losses

    monkeypatch.setattr(DDPMTrainer, "_train_step", step_then_poison)


@pytest.mark.slow
def test_divergence_never_saves_nan_and_names_the_last_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    poison_after(5, monkeypatch)
    with pytest.raises(DivergenceError, match="step_00000004.*lower learning rate") as raised:
        trainer(tmp_path, 10, log_every=100).train()  # no log step before the checkpoint of step 6
    assert isinstance(raised.value, FloatingPointError) and "step 6" in str(raised.value)
    # The good checkpoint survived rotation (keep_checkpoints=1), and nothing else was written.
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_00000004"]
    for name in ("model.safetensors", "ema.safetensors"):
        weights = load_safetensors(tmp_path / "checkpoints" / "step_00000004" / name)
        assert all(torch.isfinite(t).all() for t in weights.values())
    assert not (tmp_path / "model").exists()

    monkeypatch.undo()
    retry = trainer(tmp_path, 8, learning_rate=1e-5)  # a lower learning rate, from step 4
    retry.train()
    assert steps_logged(retry)[-1] == 8
    changes = [json.loads(line) for line in (tmp_path / "config_changes.jsonl").read_text().splitlines()]
    assert changes == [{"step": 4, "checkpoint": "step_00000004", "changes": {"learning_rate": [0.0002, 1e-05]}}]


def test_divergence_of_the_loss_on_a_log_step_names_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    poison_after(3, monkeypatch)
    with pytest.raises(DivergenceError, match=r"loss became nan at step 4.*step_00000002"):
        trainer(tmp_path, 10, log_every=1).train()


def test_resume_refuses_other_noise_or_model_settings(tmp_path: Path) -> None:
    trainer(tmp_path, 2).train()
    saved = (tmp_path / "noise_config.json").read_text()
    other_noise = NoiseConfig(num_train_timesteps=50, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    with pytest.raises(RunFolderError, match="noise.beta_schedule: checkpoint 'linear', now 'squaredcos_cap_v2'") as raised:
        trainer(tmp_path, 4, noise=other_noise).train()
    assert "noise.prediction_type" in str(raised.value) and isinstance(raised.value, CheckpointMismatchError)
    assert (tmp_path / "noise_config.json").read_text() == saved  # the run's configs are not overwritten

    torch.manual_seed(0)
    wider = DDPMTrainer(ConditionalUNet(TINY_UNET.replace(dropout=0.3)), LabelledColours(), NOISE, output_dir=str(tmp_path), max_steps=4, **SETTINGS)
    with pytest.raises(RunFolderError, match="model.dropout: checkpoint 0.1, now 0.3"):
        wider.train()


@pytest.mark.slow
def test_resume_with_other_optimisation_settings_is_logged_and_recorded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    trainer(tmp_path, 2).train()
    with caplog.at_level(logging.WARNING):
        trainer(tmp_path, 4, batch_size=8, ema_decay=0.99).train()
    assert "batch_size 4 -> 8" in caplog.text and "ema_decay 0.999 -> 0.99" in caplog.text
    row = json.loads((tmp_path / "config_changes.jsonl").read_text())
    assert row["changes"] == {"batch_size": [4, 8], "ema_decay": [0.999, 0.99]}
    assert json.loads((tmp_path / "trainer_config.json").read_text())["batch_size"] == 8


def test_settings_that_cannot_work_fail_before_training(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"sample_steps.*at most 20"):
        trainer(tmp_path / "a", 2, noise=NoiseConfig(num_train_timesteps=20))  # grids would take 50 steps
    trainer(tmp_path / "b", 2, noise=NoiseConfig(num_train_timesteps=20), sample_steps=20)  # fits
    with pytest.raises(ValueError, match="fewer than one global batch"):
        trainer(tmp_path / "c", 2, batch_size=100)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


@pytest.mark.slow
def test_model_folder_is_replaced_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = trainer(tmp_path, 2)
    first.train()
    old = load_safetensors(tmp_path / "model" / "model_ema.safetensors")

    real = DDPMSampler.save_pretrained

    def crash_midway(self, folder, ema_state_dict=None):  # type: ignore[no-untyped-def]
        self.model.save_pretrained(folder)  # new raw weights written, the EMA weights not yet
        raise KeyboardInterrupt

    monkeypatch.setattr(DDPMSampler, "save_pretrained", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path, 4).train()
    monkeypatch.setattr(DDPMSampler, "save_pretrained", real)
    # The old model, whole: its EMA weights and its raw weights from the same run.
    assert {k: torch.equal(v, old[k]) for k, v in load_safetensors(tmp_path / "model" / "model_ema.safetensors").items()} == {k: True for k in old}
    assert torch.equal(load_safetensors(tmp_path / "model" / "model.safetensors")["output_conv.weight"], first.model.state_dict()["output_conv.weight"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_stale_temporaries_of_a_killed_run_are_removed_at_start(tmp_path: Path) -> None:
    trainer(tmp_path, 2).train()
    folders = [
        tmp_path / "checkpoints" / ".tmp-step_00000004",  # a checkpoint being assembled
        tmp_path / "checkpoints" / ".step_00000002.tmp-del-1a2b3c4d",  # a rotated checkpoint being deleted
        tmp_path / ".model.tmp-5e6f7a8b",  # a model folder being written
    ]
    files = [tmp_path / ".metrics.jsonl.x1y2.tmp", tmp_path / "checkpoints" / ".state.json.k9.tmp"]
    for folder in folders:
        folder.mkdir()
        (folder / "model.safetensors").write_text("half")
    for file in files:
        file.write_text("half")
    leftovers = folders + files
    trainer(tmp_path, 4).train()
    assert not [p for p in leftovers if p.exists()]
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_00000004"]


def test_the_model_records_the_image_size_it_was_trained_on(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ConditionalUNet(TINY_UNET.replace(sample_size=64))  # the data are 16 x 16
    run = DDPMTrainer(model, LabelledColours(), NOISE, output_dir=str(tmp_path), max_steps=2, **SETTINGS)
    model_dir = run.train()
    assert json.loads((model_dir / "config.json").read_text())["sample_size"] == 16
    images = DDPMSampler.from_pretrained(model_dir).sample([["red cube"]], method="ddim", num_inference_steps=2, progress=False).images
    assert images.shape == (1, 3, 16, 16)
