"""Shapes and behaviour of the network pieces and the whole ConditionalUNet."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from clevr_diffusion import CheckpointMismatchError, ConditionalUNet, UNetConfig, encode_batch
from clevr_diffusion.models import (
    AdaptiveGroupNorm,
    Downsample,
    LabelEmbedding,
    ResBlock,
    SelfAttention,
    SinusoidalTimeEmbedding,
    TimestepEmbedding,
    Upsample,
)

TINY = dict(base_channels=8, channel_mults=(1, 2), attention_stages=(1,), norm_groups=4, num_heads=2, sample_size=16)


def test_sinusoidal_embedding_shape_and_values() -> None:
    emb = SinusoidalTimeEmbedding(16)
    out = emb(torch.tensor([0, 1, 999]))
    assert out.shape == (3, 16)
    # t = 0: every sine is 0 and every cosine is 1.
    assert torch.allclose(out[0, :8], torch.zeros(8)) and torch.allclose(out[0, 8:], torch.ones(8))
    # The first frequency is 1 radian per step.
    assert math.isclose(out[1, 0].item(), math.sin(1.0), rel_tol=1e-6)
    with pytest.raises(ValueError, match="even"):
        SinusoidalTimeEmbedding(7)


def test_embeddings_shapes() -> None:
    assert TimestepEmbedding(32, 64)(torch.tensor([3, 4])).shape == (2, 64)
    assert LabelEmbedding(24, 64)(torch.zeros(5, 24)).shape == (5, 64)


def test_adaptive_group_norm_starts_as_group_norm_and_uses_condition() -> None:
    norm = AdaptiveGroupNorm(16, cond_dim=10, groups=4)
    x, cond = torch.randn(2, 16, 5, 5), torch.randn(2, 10)
    expected = torch.nn.functional.group_norm(x, 4)
    assert torch.allclose(norm(x, cond), expected, atol=1e-5)
    with torch.no_grad():
        norm.proj[1].bias[:16] = 1.0  # gamma = 1: output doubles
        norm.proj[1].bias[16:] = 0.5  # beta = 0.5
    assert torch.allclose(norm(x, cond), expected * 2 + 0.5, atol=1e-5)
    with pytest.raises(ValueError, match="groups"):
        AdaptiveGroupNorm(10, 4, groups=4)


@pytest.mark.parametrize(("cin", "cout"), [(16, 16), (16, 32)])
def test_resblock_shapes_and_shortcut(cin: int, cout: int) -> None:
    block = ResBlock(cin, cout, cond_dim=12, groups=4, dropout=0.0)
    out = block(torch.randn(2, cin, 8, 8), torch.randn(2, 12))
    assert out.shape == (2, cout, 8, 8)
    assert isinstance(block.shortcut, torch.nn.Identity) == (cin == cout)


def test_resblock_depends_on_condition_after_training_step() -> None:
    torch.manual_seed(0)
    block = ResBlock(8, 8, cond_dim=6, groups=4)
    torch.nn.init.normal_(block.conv2.weight)  # leave the zero-init identity state
    x = torch.randn(1, 8, 4, 4)
    a, b = block(x, torch.zeros(1, 6)), block(x, torch.ones(1, 6))
    assert not torch.allclose(a, b)


def test_attention_shape_and_residual() -> None:
    attn = SelfAttention(16, num_heads=4, groups=4)
    x = torch.randn(2, 16, 6, 4)
    assert attn(x).shape == x.shape
    torch.nn.init.zeros_(attn.out.weight)
    torch.nn.init.zeros_(attn.out.bias)
    assert torch.equal(attn(x), x)  # zero output projection: pure residual


def test_down_and_upsample_shapes() -> None:
    x = torch.randn(2, 8, 16, 12)
    assert Downsample(8)(x).shape == (2, 8, 8, 6)
    assert Upsample(8)(x).shape == (2, 8, 32, 24)


@pytest.mark.parametrize("size", [32, 64])
def test_default_unet_shapes(size: int) -> None:
    model = ConditionalUNet().eval()
    x = torch.randn(2, 3, size, size)
    labels = encode_batch([["red sphere"], ["cyan cube", "gray cylinder", "blue sphere"]])
    with torch.no_grad():
        out = model(x, torch.tensor([0, 999]), labels)
    assert out.shape == (2, 3, size, size)
    assert out.dtype == torch.float32


def test_default_unet_layout_matches_the_report() -> None:
    model = ConditionalUNet()
    assert model.config.stage_channels == (32, 64, 128, 256)
    assert [len(stage.blocks) for stage in model.encoder] == [2, 2, 2, 2]
    with_attention = [isinstance(stage.attentions[0], SelfAttention) for stage in model.encoder]
    assert with_attention == [False, False, True, False]
    # Decoder: 256+256 -> 256, 256+128 -> 128 (+ attention), 128+64 -> 64, 64+32 -> 32.
    fused = [(s.blocks[0].conv1.in_channels, s.blocks[0].conv1.out_channels) for s in model.decoder]
    assert fused == [(512, 256), (384, 128), (192, 64), (96, 32)]
    assert [isinstance(s.attentions[0], SelfAttention) for s in model.decoder] == [False, True, False, False]
    assert isinstance(model.mid_attention, SelfAttention)
    assert model.output_conv.out_channels == 3
    assert 12_000_000 < model.num_parameters < 13_500_000


def test_none_labels_equal_all_zero_labels() -> None:
    torch.manual_seed(0)
    model = ConditionalUNet(**TINY).eval()
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5, 6])
    assert torch.equal(model(x, t, None), model(x, t, torch.zeros(2, 24)))


def test_labels_and_time_change_the_output() -> None:
    torch.manual_seed(0)
    model = ConditionalUNet(**TINY).eval()
    for p in model.parameters():  # move away from the zero-initialised start
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(1, 3, 16, 16)
    base = model(x, torch.tensor([10]), encode_batch([["red cube"]]))
    assert not torch.allclose(base, model(x, torch.tensor([10]), encode_batch([["blue cube"]])))
    assert not torch.allclose(base, model(x, torch.tensor([500]), encode_batch([["red cube"]])))


def test_scalar_timestep_broadcasts() -> None:
    model = ConditionalUNet(**TINY).eval()
    x = torch.randn(3, 3, 16, 16)
    assert torch.equal(model(x, 7), model(x, torch.full((3,), 7)))


def test_non_square_input() -> None:
    model = ConditionalUNet(**TINY).eval()
    assert model(torch.randn(1, 3, 16, 24), torch.tensor([1])).shape == (1, 3, 16, 24)


@pytest.mark.parametrize(
    ("x_shape", "t", "labels", "message"),
    [
        ((1, 3, 15, 16), [1], None, "not divisible"),
        ((1, 1, 16, 16), [1], None, "x must be"),
        ((2, 3, 16, 16), [1, 2, 3], None, "timesteps"),
        ((2, 3, 16, 16), [1, 2], (2, 23), "labels must be"),
    ],
)
def test_bad_inputs_give_clear_errors(x_shape, t, labels, message) -> None:  # type: ignore[no-untyped-def]
    model = ConditionalUNet(**TINY)
    y = None if labels is None else torch.zeros(labels)
    with pytest.raises(ValueError, match=message):
        model(torch.randn(x_shape), torch.tensor(t), y)


def test_config_round_trip_keeps_tuples(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = UNetConfig(channel_mults=(1, 2, 3), attention_stages=(1, 2), time_embed_dim=96)
    path = config.save(tmp_path / "config.json")
    loaded = UNetConfig.load(path)
    assert loaded == config
    assert isinstance(loaded.channel_mults, tuple) and isinstance(loaded.attention_stages, tuple)


@settings(max_examples=25, deadline=None)
@given(
    base=st.sampled_from([8, 16, 32]),
    mults=st.lists(st.sampled_from([1, 2, 3, 4]), min_size=1, max_size=4).map(tuple),
    blocks=st.integers(1, 3),
    dropout=st.floats(0, 0.5),
)
def test_config_json_round_trip_property(base: int, mults: tuple[int, ...], blocks: int, dropout: float) -> None:
    config = UNetConfig(base_channels=base, channel_mults=mults, blocks_per_stage=blocks, attention_stages=(), dropout=dropout)
    assert UNetConfig.from_json(config.to_json()) == config


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="attention_stages"):
        UNetConfig(attention_stages=(5,))
    with pytest.raises(ValueError, match="norm_groups"):
        UNetConfig(base_channels=12)
    with pytest.raises(ValueError, match="no field"):
        UNetConfig.from_dict({"base_chanels": 32})


def test_save_and_load_pretrained(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = ConditionalUNet(**TINY)
    ema = {k: v + 1 for k, v in model.state_dict().items()}
    model.save_pretrained(tmp_path, ema_state_dict=ema)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors", "model_ema.safetensors", "README.md"}
    raw = ConditionalUNet.from_pretrained(tmp_path, use_ema=False)
    averaged = ConditionalUNet.from_pretrained(tmp_path)
    assert raw.config == model.config and not averaged.training
    for key, value in model.state_dict().items():
        assert torch.equal(raw.state_dict()[key], value)
        assert torch.equal(averaged.state_dict()[key], ema[key])


def test_loading_weights_of_another_configuration_fails_clearly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ConditionalUNet(**TINY).save_pretrained(tmp_path)
    other = dict(TINY, base_channels=16)
    UNetConfig(**other).save(tmp_path / "config.json")
    with pytest.raises(CheckpointMismatchError, match="another model configuration") as info:
        ConditionalUNet.from_pretrained(tmp_path)
    assert "shape mismatches" in str(info.value) and "vs model" in str(info.value)


def test_truncated_weights_file_fails_clearly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ConditionalUNet(**TINY).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated"):
        ConditionalUNet.from_pretrained(tmp_path)


def test_missing_folder_fails_clearly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FileNotFoundError, match="config.json"):
        ConditionalUNet.from_pretrained(tmp_path / "nowhere")


class _RecordOps(TorchDispatchMode):
    """Records the aten ops that run (below autograd and autocast) and the dtypes they cast."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []
        self.activation_casts = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.ops.append(str(func))
        out = func(*args, **(kwargs or {}))
        # A cast of a whole feature map (B, C, H, W), as opposed to a weight's cast.
        if func is torch.ops.aten._to_copy.default and args[0].dim() == 4 and args[0].shape[0] == 4:
            self.activation_casts += 1
        return out


@pytest.mark.parametrize("channels_last", [False, True])
def test_attention_runs_the_fused_kernel_not_the_math_fallback(channels_last: bool) -> None:
    """q, k, v split from an NCHW map are strided views; SDPA then falls back to its plain
    float32 kernel (softmax of bmm) unless they are made unit-stride."""
    attention = SelfAttention(64, num_heads=4, groups=32)
    x = torch.randn(2, 64, 8, 8, requires_grad=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with _RecordOps() as record:
        attention(x).sum().backward()
    assert "aten._scaled_dot_product_flash_attention_for_cpu.default" in record.ops
    assert "aten._scaled_dot_product_flash_attention_for_cpu_backward.default" in record.ops
    assert "aten.bmm.default" not in record.ops


def test_norms_stay_in_bf16_under_autocast_and_agree_with_float32() -> None:
    """Under bf16 autocast the norm + modulation + SiLU chain keeps the feature maps in bf16
    (no up-and-down casts around each norm) and matches float32 to bf16 precision."""
    torch.manual_seed(0)
    model = ConditionalUNet(**TINY)
    for module in model.modules():  # non-zero modulation, so gamma and beta take part
        if isinstance(module, AdaptiveGroupNorm):
            torch.nn.init.normal_(module.proj[1].weight, std=0.1)
    x, t, labels = torch.randn(4, 3, 16, 16), torch.tensor([1, 10, 100, 500]), encode_batch([["red cube"]] * 4)
    reference = model(x, t, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16), _RecordOps() as record:
        out = model(x, t, labels)
        out.float().sum().backward()
    assert out.dtype == torch.bfloat16
    # 3 are the network's input and output casts: before, every norm added two.
    assert record.activation_casts <= 4, record.activation_casts
    error = (out.float() - reference).abs().max() / reference.abs().max()
    assert error < 0.05, error

    norm = AdaptiveGroupNorm(16, 8, groups=4)
    torch.nn.init.normal_(norm.proj[1].weight, std=0.1)
    h, cond = torch.randn(4, 16, 8, 8) * 3 + 1, torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = norm(h.bfloat16(), cond)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), norm(h.bfloat16().float(), cond), atol=0.03, rtol=0.02)
    assert norm(h, cond).dtype == torch.float32  # no autocast: untouched
