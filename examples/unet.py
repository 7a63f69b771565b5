"""ConditionalUNet: build a network, run it, save it and load it back.

Run from the repository root (takes a few seconds on a CPU):

    python examples/unet.py

It prints the parameter counts of the default and of a tiny network, the shapes of a forward
pass, the config.json round trip and a check that weights saved with ``save_pretrained``
come back identical from ``from_pretrained``. Files go to a temporary folder that is deleted
at the end.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from clevr_diffusion import CheckpointMismatchError, ConditionalUNet, UNetConfig, encode_batch


def main() -> None:
    torch.manual_seed(0)

    # The default network: the lab report's 32/64/128/256-channel UNet for 64 x 64 images.
    print(f"default ConditionalUNet: {ConditionalUNet().num_parameters:,} parameters")

    # A tiny one for CPU experiments: keyword arguments are UNetConfig fields.
    model = ConditionalUNet(base_channels=16, channel_mults=(1, 2), attention_stages=(1,), sample_size=32)
    print(f"tiny ConditionalUNet:    {model.num_parameters:,} parameters")
    print("stage channels:", model.config.stage_channels, "| downsampling factor:", model.config.downsampling_factor)

    # Forward pass: noisy images x_t, integer timesteps t and multi-hot labels.
    x_t = torch.randn(3, 3, 32, 32)
    t = torch.tensor([0, 500, 999])
    labels = encode_batch([["red sphere"], ["cyan cube", "gray cylinder"], ["blue cube", "red cube", "yellow sphere"]])
    with torch.no_grad():
        prediction = model(x_t, t, labels)
        unconditional = model(x_t, t)  # labels=None: the all-zero "no label" input
    print(f"forward: x_t {tuple(x_t.shape)}, t {tuple(t.shape)}, labels {tuple(labels.shape)} "
          f"-> {tuple(prediction.shape)}")
    print("unconditional output shape:", tuple(unconditional.shape))

    # Bad input fails with a message that says how to fix it.
    try:
        model(torch.randn(1, 3, 31, 31), 10)
    except ValueError as error:
        print("odd image size ->", error)

    # The config round-trips through JSON with its types (tuples stay tuples).
    config = UNetConfig.from_json(model.config.to_json())
    print("config round trip equal:", config == model.config, "| channel_mults:", config.channel_mults)
    rebuilt = ConditionalUNet.from_config(config.to_dict())
    print("rebuilt from the dict form:", rebuilt.num_parameters == model.num_parameters)

    with tempfile.TemporaryDirectory() as tmp:
        folder = model.save_pretrained(Path(tmp) / "tiny-unet")
        print("saved:", sorted(p.name for p in folder.iterdir()))
        loaded = ConditionalUNet.from_pretrained(folder)  # eval mode, on the CPU
        same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True))
        print("weights identical after loading:", same, "| training mode:", loaded.training)
        with torch.no_grad():
            model.eval()
            print("same predictions:", torch.allclose(model(x_t, t, labels), loaded(x_t, t, labels)))

        # Loading weights into a network of another configuration is a clear error.
        ConditionalUNet(base_channels=8, channel_mults=(1, 2), attention_stages=(1,)).save_pretrained(Path(tmp) / "other")
        (Path(tmp) / "other" / "config.json").write_text((folder / "config.json").read_text())
        try:
            ConditionalUNet.from_pretrained(Path(tmp) / "other")
        except CheckpointMismatchError as error:
            print("mismatched weights ->", type(error).__name__ + ":", str(error).split("; ", 1)[1][:90] + "...")


if __name__ == "__main__":
    main()
