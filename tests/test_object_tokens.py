"""Object-token conditioning: ObjectTokens, CrossAttention and their wiring into ConditionalUNet."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from clevr_diffusion import ConditionalUNet, UNetConfig, encode_batch
from clevr_diffusion.models.attention import CrossAttention
from clevr_diffusion.models.embeddings import ObjectTokens

TINY = dict(base_channels=8, channel_mults=(1, 2), attention_stages=(1,), norm_groups=4, num_heads=2, sample_size=16)
TOKENS_ONLY = dict(TINY, label_vector=False, cross_attention_stages=(0, 1), cross_attention_bottleneck=True)
BOTH = dict(TINY, cross_attention_stages=(1,), cross_attention_bottleneck=True)
NEW_MODULES = ("object_tokens", "cross_attention")


def multi_hot(rows: list[list[str]]) -> torch.Tensor:
    """(B, 24) labels of the rows; an empty row is all-zero (the unconditional input)."""
    return torch.cat([encode_batch([row]) if row else torch.zeros(1, 24) for row in rows])


def randomised(model: ConditionalUNet) -> ConditionalUNet:
    """The model with every parameter drawn at random: no zero-initialised output convolution
    leaves a path (cross-attention, AdaGN modulation) switched off."""
    torch.manual_seed(1)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return model.eval()


# ------------------------------------------------------------------------------ config


def test_config_validation_messages() -> None:
    with pytest.raises(ValueError, match="cross_attention_stages holds 2"):
        UNetConfig(**dict(TINY, cross_attention_stages=(2,)))
    with pytest.raises(ValueError, match="cross_attention_stages holds -1"):
        UNetConfig(**dict(TINY, cross_attention_stages=(-1,)))
    with pytest.raises(ValueError, match="set label_vector=True or name cross_attention_stages"):
        UNetConfig(**dict(TINY, label_vector=False))
    # Stages of 12 and 24 channels, no self-attention: only cross-attention constrains num_heads.
    plain = dict(base_channels=12, channel_mults=(1, 2), norm_groups=4, attention_stages=(), bottleneck_attention=False)
    with pytest.raises(ValueError, match="num_heads=8 does not divide 12"):
        UNetConfig(**plain, num_heads=8, cross_attention_stages=(0,))
    assert UNetConfig(**plain, num_heads=8, cross_attention_stages=(1,)).uses_object_tokens
    with pytest.raises(ValueError, match="num_heads=5 does not divide 24"):
        UNetConfig(**plain, num_heads=5, cross_attention_bottleneck=True)


def test_uses_object_tokens_and_cond_dim() -> None:
    assert not UNetConfig().uses_object_tokens and UNetConfig().cond_dim == 2 * UNetConfig().embed_dim
    assert UNetConfig(cross_attention_stages=(1,)).uses_object_tokens
    assert UNetConfig(cross_attention_bottleneck=True).uses_object_tokens
    tokens_only = UNetConfig(label_vector=False, cross_attention_bottleneck=True)
    assert tokens_only.cond_dim == tokens_only.embed_dim == 128


def test_config_json_omits_defaults_and_round_trips(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The default config.json is what earlier versions wrote (and can read back).
    assert list(UNetConfig().to_dict()) == [
        "in_channels", "out_channels", "num_labels", "base_channels", "channel_mults", "blocks_per_stage",
        "decoder_blocks_per_stage", "attention_stages", "bottleneck_attention", "num_heads", "time_embed_dim",
        "norm_groups", "dropout", "sample_size",
    ]  # fmt: skip
    config = UNetConfig(**TOKENS_ONLY)
    data = config.to_dict()
    assert data["label_vector"] is False and data["cross_attention_stages"] == [0, 1]
    assert data["cross_attention_bottleneck"] is True
    loaded = UNetConfig.load(config.save(tmp_path / "config.json"))
    assert loaded == config and isinstance(loaded.cross_attention_stages, tuple)


# ------------------------------------------------------------------ default: unchanged


def test_default_model_has_no_new_modules_and_todays_parameter_count() -> None:
    # Counted on the code before object tokens existed: the default model must not change.
    assert ConditionalUNet(base_channels=16).num_parameters == 3_191_235
    tiny = ConditionalUNet(**TINY)
    assert tiny.num_parameters == 80_659 and len(tiny.state_dict()) == 128
    for model in (tiny, ConditionalUNet(base_channels=16)):
        assert not [k for k in model.state_dict() if any(name in k for name in NEW_MODULES)]
        assert model.object_tokens is None and model.mid_cross_attention is None
        assert all(stage.cross_attentions is None for stage in [*model.encoder, *model.decoder])


def test_only_requested_modules_are_built() -> None:
    tokens_only = ConditionalUNet(**TOKENS_ONLY)
    assert tokens_only.label_embedding is None
    assert not [k for k in tokens_only.state_dict() if k.startswith("label_embedding")]
    assert tokens_only.mid_block1.cond_proj[1].in_features == tokens_only.config.embed_dim
    both = ConditionalUNet(**BOTH)
    assert both.label_embedding is not None and both.mid_block1.cond_proj[1].in_features == 2 * both.config.embed_dim
    # Stage 1 only: encoder stage 1 (2 blocks) and decoder stage 1 (the decoder's first, 1 block).
    assert [s.cross_attentions is not None for s in both.encoder] == [False, True]
    assert [s.cross_attentions is not None for s in both.decoder] == [True, False]
    assert len(both.encoder[1].cross_attentions) == 2 and len(both.decoder[0].cross_attentions) == 1
    assert isinstance(both.mid_cross_attention, CrossAttention)
    assert both.object_tokens is not None and both.object_tokens.tokens.shape == (25, both.config.embed_dim)


# -------------------------------------------------------------------- object tokens


def test_object_tokens_mask_includes_present_objects_and_the_null_token() -> None:
    module = ObjectTokens(num_labels=5, dim=6)
    labels = torch.tensor([[0, 1, 0, 0, 1], [0, 0, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.float32)
    tokens, mask = module(labels)
    assert tokens.shape == (6, 6) and tokens is module.tokens
    expected = torch.tensor([[0, 1, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1], [1, 1, 1, 0, 0, 1]], dtype=torch.bool)
    assert mask.dtype == torch.bool and torch.equal(mask, expected)
    _, half_mask = module(labels.bfloat16())
    assert torch.equal(half_mask, expected)


# ------------------------------------------------------------------- cross-attention


def test_fresh_cross_attention_is_the_identity() -> None:
    layer = CrossAttention(16, token_dim=10, num_heads=4, groups=4)
    x, tokens = torch.randn(3, 16, 5, 4), torch.randn(7, 10)
    mask = torch.rand(3, 7) > 0.5
    mask[:, -1] = True
    assert torch.equal(layer(x, tokens, mask), x)


def test_cross_attention_matches_a_hand_written_masked_softmax() -> None:
    torch.manual_seed(0)
    layer = CrossAttention(8, token_dim=6, num_heads=2, groups=2)
    torch.nn.init.normal_(layer.out.weight)
    x, tokens = torch.randn(2, 8, 3, 3), torch.randn(4, 6)
    mask = torch.tensor([[True, False, False, True], [False, True, True, True]])
    q = layer.q(layer.norm(x)).flatten(2).unflatten(1, (2, 4)).transpose(-1, -2)  # (B, h, HW, d)
    k, v = layer.kv(tokens).chunk(2, dim=-1)
    k, v = (z.unflatten(-1, (2, 4)).transpose(0, 1) for z in (k, v))  # (h, K, d)
    scores = q @ k.transpose(-1, -2) / 2.0  # sqrt(d) = 2
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    attended = (scores.softmax(-1) @ v).transpose(-1, -2).flatten(1, 2).unflatten(-1, (3, 3))
    expected = x + layer.out(attended)
    torch.testing.assert_close(layer(x, tokens, mask), expected, atol=1e-5, rtol=1e-5)
    # Per-row tokens (B, K, D) give the same as the shared set.
    torch.testing.assert_close(layer(x, tokens.expand(2, 4, 6), mask), expected, atol=1e-5, rtol=1e-5)


class _RecordOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("channels_last", [False, True])
def test_cross_attention_runs_the_fused_kernel(channels_last: bool) -> None:
    layer = CrossAttention(64, token_dim=32, num_heads=4, groups=32)
    tokens, mask = ObjectTokens(24, 32)(multi_hot([["red cube"], []]))
    x = torch.randn(2, 64, 8, 8, requires_grad=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with _RecordOps() as record:
        layer(x, tokens, mask).sum().backward()
    assert "aten._scaled_dot_product_flash_attention_for_cpu.default" in record.ops
    assert "aten.bmm.default" not in record.ops


# ----------------------------------------------------------------------- the UNet


@pytest.mark.parametrize("variant", [TINY, TOKENS_ONLY, BOTH], ids=["vector", "tokens", "both"])
def test_shapes_and_unconditional_rows(variant: dict) -> None:  # type: ignore[type-arg]
    model = randomised(ConditionalUNet(**variant))
    x, t = torch.randn(3, 3, 16, 24), torch.tensor([0, 50, 999])
    labels = multi_hot([["red cube"], ["blue sphere", "gray cylinder", "cyan cube"], []])
    with torch.no_grad():
        out = model(x, t, labels)
        unconditional = model(x, t, None)
    assert out.shape == (3, 3, 16, 24) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and torch.isfinite(unconditional).all()
    assert torch.equal(unconditional, model(x, t, torch.zeros(3, 24)))
    torch.testing.assert_close(out[2], unconditional[2])  # the all-zero row is the unconditional one


def test_adding_fresh_cross_attention_leaves_the_output_unchanged() -> None:
    plain = randomised(ConditionalUNet(**TINY))
    with_tokens = ConditionalUNet(**BOTH).eval()
    missing, unexpected = with_tokens.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(any(name in k for name in NEW_MODULES) for k in missing)
    x, t, labels = torch.randn(2, 3, 16, 16), torch.tensor([3, 700]), encode_batch([["red cube"], ["cyan sphere"]])
    with torch.no_grad():
        assert torch.equal(with_tokens(x, t, labels), plain(x, t, labels))


def test_absent_objects_do_not_influence_the_output() -> None:
    model = randomised(ConditionalUNet(**TOKENS_ONLY))
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([10, 400, 900])
    labels = multi_hot([["red cube"], ["blue sphere", "gray cylinder"], []])
    absent = int((labels.sum(0) == 0).nonzero()[0])
    present = int(labels[0].argmax())
    with torch.no_grad():
        before = model(x, t, labels)
        model.object_tokens.tokens[absent] += 10.0
        assert torch.equal(model(x, t, labels), before)
        model.object_tokens.tokens[present] += 1.0
        after = model(x, t, labels)
    # Only the row with that object changes; the others (and the unconditional row) do not.
    assert not torch.allclose(after[0], before[0])
    assert torch.equal(after[1:], before[1:])


def test_tokens_only_model_follows_the_labels() -> None:
    model = randomised(ConditionalUNet(**TOKENS_ONLY))
    x = torch.randn(1, 3, 16, 16).expand(4, -1, -1, -1)
    labels = multi_hot([["red cube"], ["blue cube"], ["red cube", "blue cube"], []])
    with torch.no_grad():
        out = model(x, torch.tensor([200] * 4), labels)
    for i in range(4):
        for j in range(i):
            assert (out[i] - out[j]).abs().max() > 1e-3, (i, j)


def test_rows_are_independent_of_the_rest_of_the_batch() -> None:
    model = randomised(ConditionalUNet(**BOTH))
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([5, 500, 995])
    labels = multi_hot([["red cube"], ["blue sphere", "gray cylinder", "cyan cube"], []])
    with torch.no_grad():
        batched = model(x, t, labels)
        for i in range(3):
            torch.testing.assert_close(model(x[i : i + 1], t[i : i + 1], labels[i : i + 1])[0], batched[i])


def test_autocast_bf16_matches_float32() -> None:
    model = randomised(ConditionalUNet(**TOKENS_ONLY))
    x, t, labels = torch.randn(2, 3, 16, 16), torch.tensor([10, 600]), multi_hot([["red cube"], []])
    with torch.no_grad():
        reference = model(x, t, labels)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, t, labels)
    assert out.dtype == torch.bfloat16
    error = (out.float() - reference).abs().max() / reference.abs().max()
    assert error < 0.05, error


def test_tiny_tokens_only_model_trains_and_absent_tokens_stay_put() -> None:
    torch.manual_seed(0)
    # Lean (one block a stage, no self-attention) to stay fast; tokens only, at stage 1 and the bottleneck.
    lean = dict(TOKENS_ONLY, cross_attention_stages=(1,), blocks_per_stage=1, attention_stages=(), dropout=0.0)
    model = ConditionalUNet(**dict(lean, bottleneck_attention=False))
    gen = torch.Generator().manual_seed(0)
    labels = multi_hot([["red cube"], ["blue sphere"], ["red cube", "gray cylinder"], []])
    x0 = torch.rand(4, 3, 8, 8, generator=gen) * 2 - 1
    noise = torch.randn(4, 3, 8, 8, generator=gen)
    t = torch.randint(0, 1000, (4,), generator=gen)
    x_t = 0.6 * x0 + 0.8 * noise
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = model.object_tokens.tokens.detach().clone()
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(model(x_t, t, labels), noise)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    moved = (model.object_tokens.tokens.detach() - start).abs().amax(dim=1) > 0
    used = torch.cat([labels.amax(0) > 0, torch.tensor([True])])  # the null token is always attended
    assert torch.equal(moved, used)


def test_save_and_load_a_token_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = randomised(ConditionalUNet(**BOTH))
    model.save_pretrained(tmp_path)
    loaded = ConditionalUNet.from_pretrained(tmp_path)
    assert loaded.config == model.config
    x, labels = torch.randn(1, 3, 16, 16), encode_batch([["red cube"]])
    with torch.no_grad():
        assert torch.equal(loaded(x, 7, labels), model(x, 7, labels))
