"""Sharing models on the Hugging Face Hub, with the real huggingface_hub client and no network.

Every request goes to `HubServer` (tests/hub_server.py) on 127.0.0.1: conftest.py points
HF_ENDPOINT at it, and HF_HOME at a temporary folder, before huggingface_hub is first imported.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import constants as hf_constants

from clevr_diffusion import ConditionalUNet, DDPMSampler
from clevr_diffusion.cli import main
from clevr_diffusion.hub import CARD_MARKER, HubUnreachableError, is_repo_id, model_card, push_folder
from clevr_diffusion.models.serialization import CheckpointMismatchError
from clevr_diffusion.training import DDPMTrainer, TrainerConfig

from conftest import TINY_UNET
from hub_server import HubServer

LABELS = [["red sphere"], ["cyan cube", "gray cylinder"]]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection to another host than 127.0.0.1 (telemetry, a real Hub, ...)."""
    connect = socket.socket.connect

    def guarded(sock: socket.socket, address: object) -> object:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"a test tried to reach {address}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def hub() -> HubServer:
    """A fresh, empty Hub server at HF_ENDPOINT for one test."""
    endpoint = os.environ["HF_ENDPOINT"]
    if hf_constants.ENDPOINT != endpoint or not endpoint.startswith("http://127.0.0.1:"):
        pytest.fail(f"huggingface_hub was imported before conftest.py set HF_ENDPOINT ({hf_constants.ENDPOINT})")
    server = HubServer(port=int(endpoint.rsplit(":", 1)[1])).start()
    yield server
    server.stop()


@pytest.fixture
def sampler(tiny_unet: ConditionalUNet) -> DDPMSampler:
    return DDPMSampler(tiny_unet)


def ema_of(model: ConditionalUNet, shift: float = 0.01) -> dict[str, torch.Tensor]:
    return {k: v + shift if v.is_floating_point() else v.clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def draw(s: DDPMSampler) -> torch.Tensor:
    return s.sample(LABELS, method="ddim", num_inference_steps=3, seed=7, progress=False).images


def test_environment_is_isolated() -> None:
    assert hf_constants.ENDPOINT.startswith("http://127.0.0.1:")
    assert Path(hf_constants.HF_HUB_CACHE).is_relative_to(Path(os.environ["HF_HOME"]))
    assert not Path(os.environ["HF_HOME"]).is_relative_to(Path.home()) or "clevr-diffusion-hf-home" in os.environ["HF_HOME"]
    assert hf_constants.HF_HUB_DISABLE_TELEMETRY


def test_is_repo_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_repo_id("user/clevr-ddpm") and is_repo_id("org.name/model_1")
    assert not is_repo_id("runs/../model") and not is_repo_id("single") and not is_repo_id("a/b/c")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "user" / "clevr-ddpm").mkdir(parents=True)
    assert not is_repo_id("user/clevr-ddpm")  # an existing folder wins


def test_sampler_push_then_pull_is_bit_identical(hub: HubServer, sampler: DDPMSampler, tmp_path: Path) -> None:
    ema = ema_of(sampler.model)
    url = sampler.push_to_hub("alice/clevr-ddpm", ema_state_dict=ema)
    assert "alice/clevr-ddpm" in url
    files = hub.repos["alice/clevr-ddpm"].commits[hub.repos["alice/clevr-ddpm"].branches["main"]].files
    assert set(files) >= {"config.json", "model.safetensors", "model_ema.safetensors", "scheduler_config.json", "sampler_config.json", "README.md"}

    cache = tmp_path / "cache"
    pulled = DDPMSampler.from_pretrained("alice/clevr-ddpm", cache_dir=cache)
    assert same(pulled.model.state_dict(), ema)
    raw = DDPMSampler.from_pretrained("alice/clevr-ddpm", use_ema=False, cache_dir=cache)
    assert same(raw.model.state_dict(), sampler.model.state_dict())
    assert pulled.vocabulary.names == sampler.vocabulary.names and pulled.config == sampler.config
    assert pulled.noise_config == sampler.noise_config
    assert torch.equal(draw(raw), draw(sampler))

    # The scheduler config is diffusers', and the card carries the metadata.
    from diffusers import DDPMScheduler

    snapshot = next((cache).glob("models--alice--clevr-ddpm/snapshots/*"))
    scheduler = DDPMScheduler.from_pretrained(snapshot)
    assert scheduler.config.num_train_timesteps == sampler.noise_config.num_train_timesteps
    card = (snapshot / "README.md").read_text()
    meta = huggingface_hub.ModelCard(card).data.to_dict()
    assert meta["library_name"] == "clevr-diffusion" and meta["license"] == "mit"
    assert {"diffusion", "ddpm", "clevr", "i-clevr", "pytorch"} <= set(meta["tags"])
    assert meta["clevr_diffusion"]["labels"] == list(sampler.vocabulary.names)
    assert 'DDPMSampler.from_pretrained("alice/clevr-ddpm")' in card and "## Model configuration" in card


def test_unet_push_pull_and_strict_loading(hub: HubServer, tiny_unet: ConditionalUNet, tmp_path: Path) -> None:
    tiny_unet.push_to_hub("alice/unet", ema_state_dict=ema_of(tiny_unet))
    pulled = ConditionalUNet.from_pretrained("alice/unet", use_ema=False, cache_dir=tmp_path / "c")
    assert same(pulled.state_dict(), tiny_unet.state_dict())
    assert same(ConditionalUNet.from_pretrained("alice/unet", cache_dir=tmp_path / "c").state_dict(), ema_of(tiny_unet))

    # Weights of another configuration under this config.json: a clear error naming the keys.
    folder = tmp_path / "mixed"
    ConditionalUNet(TINY_UNET.replace(base_channels=4, norm_groups=2)).save_pretrained(folder)
    TINY_UNET.save(folder / "config.json")
    push_folder(folder, "alice/mixed")
    with pytest.raises(CheckpointMismatchError, match=r"alice/mixed.*shape mismatches: decoder"):
        ConditionalUNet.from_pretrained("alice/mixed", cache_dir=tmp_path / "c")


def test_second_push_is_seen_by_a_later_pull(hub: HubServer, sampler: DDPMSampler, tmp_path: Path) -> None:
    sampler.push_to_hub("bob/run")
    first_commit = hub.repos["bob/run"].branches["main"]
    first = DDPMSampler.from_pretrained("bob/run")  # the default cache, under the temporary HF_HOME
    assert same(first.model.state_dict(), sampler.model.state_dict())

    with torch.no_grad():
        for p in sampler.model.parameters():
            p.add_(0.5)
    sampler.push_to_hub("bob/run", commit_message="more training")
    second = DDPMSampler.from_pretrained("bob/run")
    assert same(second.model.state_dict(), sampler.model.state_dict())
    assert not same(second.model.state_dict(), first.model.state_dict())
    # An older commit stays reachable by its id, a branch by its name.
    old = DDPMSampler.from_pretrained("bob/run", revision=first_commit)
    assert same(old.model.state_dict(), first.model.state_dict())
    sampler.model.push_to_hub("bob/run", revision="dev")
    assert "dev" in hub.repos["bob/run"].branches
    assert same(ConditionalUNet.from_pretrained("bob/run", revision="dev").state_dict(), sampler.model.state_dict())


def test_offline_pull_from_the_cache(hub: HubServer, sampler: DDPMSampler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sampler.push_to_hub("carol/offline")
    cache = tmp_path / "cache"
    online = DDPMSampler.from_pretrained("carol/offline", cache_dir=cache)
    hub.stop()
    served = len(hub.requests)

    # The server is down: the cache answers (huggingface_hub falls back to it), so does
    # local_files_only...
    down = DDPMSampler.from_pretrained("carol/offline", cache_dir=cache)
    assert same(down.model.state_dict(), online.model.state_dict())
    cached = DDPMSampler.from_pretrained("carol/offline", cache_dir=cache, local_files_only=True)
    assert same(cached.model.state_dict(), online.model.state_dict())
    # ... and so does HF_HUB_OFFLINE=1 (read by huggingface_hub at import: patched here too).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    offline = DDPMSampler.from_pretrained("carol/offline", cache_dir=cache)
    assert same(offline.model.state_dict(), online.model.state_dict())
    assert torch.equal(draw(offline), draw(online))
    assert len(hub.requests) == served
    with pytest.raises(FileNotFoundError, match="carol/never-pulled.*not in the local cache"):
        DDPMSampler.from_pretrained("carol/never-pulled", cache_dir=cache)


def test_clear_errors(hub: HubServer, sampler: DDPMSampler, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match="no model repo 'nobody/nothing' on the Hugging Face Hub"):
        DDPMSampler.from_pretrained("nobody/nothing", cache_dir=cache)

    sampler.push_to_hub("dave/model")
    with pytest.raises(ValueError, match="'dave/model' has no revision 'v9'"):
        DDPMSampler.from_pretrained("dave/model", revision="v9", cache_dir=cache)

    folder = tmp_path / "incomplete"
    sampler.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    push_folder(folder, "dave/incomplete")
    with pytest.raises(FileNotFoundError, match="'dave/incomplete' .* has no model.safetensors"):
        DDPMSampler.from_pretrained("dave/incomplete", cache_dir=cache)

    folder = tmp_path / "truncated"
    sampler.save_pretrained(folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    push_folder(folder, "dave/truncated")
    with pytest.raises(ValueError, match="model.safetensors of the Hub repo 'dave/truncated'.*truncated"):
        DDPMSampler.from_pretrained("dave/truncated", cache_dir=cache)


def test_damaged_cached_download_is_fetched_again(hub: HubServer, sampler: DDPMSampler, tmp_path: Path) -> None:
    sampler.push_to_hub("dave/damaged")
    cache = tmp_path / "cache"
    DDPMSampler.from_pretrained("dave/damaged", cache_dir=cache)
    cached = next(cache.glob("models--dave--damaged/snapshots/*/model.safetensors")).resolve()
    cached.write_bytes(cached.read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated.*force_download=True"):
        DDPMSampler.from_pretrained("dave/damaged", cache_dir=cache)
    repaired = DDPMSampler.from_pretrained("dave/damaged", cache_dir=cache, force_download=True)
    assert same(repaired.model.state_dict(), sampler.model.state_dict())


def test_private_repo_needs_the_token(hub: HubServer, sampler: DDPMSampler, tmp_path: Path) -> None:
    sampler.push_to_hub("erin/secret", private=True, token="hf_test_token")
    assert hub.repos["erin/secret"].private
    with pytest.raises(FileNotFoundError, match="private repo"):
        DDPMSampler.from_pretrained("erin/secret", cache_dir=tmp_path / "a")
    pulled = DDPMSampler.from_pretrained("erin/secret", token="hf_test_token", cache_dir=tmp_path / "b")
    assert same(pulled.model.state_dict(), sampler.model.state_dict())


def test_card_keeps_hand_written_readme_and_reports_evaluation(sampler: DDPMSampler, tmp_path: Path) -> None:
    folder = sampler.save_pretrained(tmp_path / "m")
    assert CARD_MARKER in (folder / "README.md").read_text()
    (folder / "evaluation").mkdir()
    report = {"evaluator": "bundled", "seeds": 1, "sampling": {"method": "ddim"},
              "files": {"test": {"label_accuracy": {"mean": 0.75}, "image_accuracy": {"mean": 0.5}}}}
    (folder / "evaluation" / "report.json").write_text(json.dumps(report))
    card = model_card(folder, repo_id="u/m", training={"max_steps": 3})
    assert "| test.json | 0.750 | 0.500 |" in card and '"max_steps": 3' in card
    (folder / "README.md").write_text("# my own card\n")
    sampler.save_pretrained(folder)
    assert (folder / "README.md").read_text() == "# my own card\n"


def test_cli_push_then_sample_by_repo_id(hub: HubServer, sampler: DDPMSampler, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    sampler.save_pretrained(run / "model")
    assert main(["push", str(run), "frank/cli-model", "--commit-message", "first"]) == 0
    assert "frank/cli-model" in capsys.readouterr().out
    out = tmp_path / "grid.png"
    args = ["sample", "--model", "frank/cli-model", "--labels", "red sphere", "--method", "ddim", "--steps", "2", "--out", str(out)]
    assert main(args) == 0 and out.is_file()
    assert main(["sample", "--model", "frank/absent", "--labels", "red sphere", "--out", str(out)]) == 2
    assert "no model repo 'frank/absent'" in capsys.readouterr().err
    assert main(["push", str(tmp_path / "nothing"), "frank/x"]) == 2
    assert main(["push", str(run), "not a repo"]) == 2
    assert "not a Hub repo id" in capsys.readouterr().err


def test_push_without_a_connection_is_one_line(
    hub: HubServer, sampler: DDPMSampler, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = sampler.save_pretrained(tmp_path / "model")
    hub.stop()  # nothing listens at HF_ENDPOINT: the client's own connection error
    with pytest.raises(HubUnreachableError, match=f"Hub at {os.environ['HF_ENDPOINT']} could not be reached") as info:
        push_folder(folder, "hana/offline")
    assert isinstance(info.value, ConnectionError)
    assert main(["push", str(folder), "hana/offline"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "could not be reached" in err and "check the network connection, or HF_ENDPOINT" in err and "HF_TOKEN" in err
    with pytest.raises(HubUnreachableError):
        main(["--debug", "push", str(folder), "hana/offline"])


def test_a_download_cut_off_is_one_line(
    sampler: DDPMSampler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    httpx2 = pytest.importorskip("httpx2", reason="the HTTP client of huggingface_hub 2; older ones use requests")

    def cut_off(*args: object, **kwargs: object) -> str:
        raise httpx2.ConnectTimeout("timed out")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cut_off)
    with pytest.raises(HubUnreachableError, match=r"could not be reached \(timed out\)"):
        DDPMSampler.from_pretrained("ivan/model", cache_dir=tmp_path / "cache")
    assert main(["sample", "--model", "ivan/model", "--labels", "red sphere", "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not be reached" in err and "Traceback" not in err


@pytest.mark.slow
def test_trainer_pushes_every_n_steps_and_at_the_end(hub: HubServer, tiny_unet: ConditionalUNet, colour_dataset, tmp_path: Path) -> None:
    trainer = DDPMTrainer(
        tiny_unet, colour_dataset, output_dir=str(tmp_path / "run"), max_steps=4, batch_size=16,
        sample_every=-1, checkpoint_every=0, push_to_hub="gina/trained", push_every=2,
    )
    trainer.train()
    repo = hub.repos["gina/trained"]
    messages = [c.message for c in repo.commits.values()]
    assert messages[1:] == ["Training step 2", "Training step 4 (finished)"]
    assert tiny_unet.training  # a periodic push leaves the model training
    pulled = DDPMSampler.from_pretrained("gina/trained", cache_dir=tmp_path / "c")
    assert same(pulled.model.state_dict(), trainer.ema.state_dict())
    assert '"push_every": 2' in repo.commits[repo.branches["main"]].files["README.md"].decode()


@pytest.mark.slow
def test_trainer_survives_a_failed_push(hub: HubServer, tiny_unet: ConditionalUNet, colour_dataset, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    hub.stop()  # the Hub is down: training still ends with its model folder
    trainer = DDPMTrainer(
        tiny_unet, colour_dataset, output_dir=str(tmp_path / "run"), max_steps=2, batch_size=16,
        sample_every=-1, checkpoint_every=0, push_to_hub="gina/down", push_every=1,
    )
    assert (trainer.train() / "config.json").is_file()
    assert "clevr-diffusion push" in caplog.text and "gina/down" in caplog.text


def test_trainer_config_checks_the_repo_id() -> None:
    with pytest.raises(ValueError, match="not a Hub repo id"):
        TrainerConfig(push_to_hub="no-namespace")
    with pytest.raises(ValueError, match="push_every needs push_to_hub"):
        TrainerConfig(push_every=10)
