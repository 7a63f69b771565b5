"""The CPU's bfloat16 check and the warning that bf16 autocast will be slow."""

from __future__ import annotations

import pytest
import torch

from clevr_diffusion.utils import hardware


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"), [(False, False, False), (True, False, True), (False, True, True), (True, True, True)]
)
def test_cpu_runs_bf16_asks_torch(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool, expected: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert hardware.cpu_runs_bf16() is expected


def test_cpu_runs_bf16_is_true_when_torch_cannot_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert hardware.cpu_runs_bf16() is True  # unknown: no warning on a guess


def test_slow_bf16_warning_only_for_bf16_on_a_cpu_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_runs_bf16", lambda: False)
    message = hardware.slow_bf16_warning("cpu", "bf16")
    assert message is not None
    assert torch.backends.cpu.get_cpu_capability() in message and "'no'" in message  # names the CPU and the fix
    assert hardware.slow_bf16_warning(torch.device("cpu"), "no") is None
    assert hardware.slow_bf16_warning("cuda", "bf16") is None
    monkeypatch.setattr(hardware, "cpu_runs_bf16", lambda: True)
    assert hardware.slow_bf16_warning("cpu", "bf16") is None
