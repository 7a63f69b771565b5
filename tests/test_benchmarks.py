"""The benchmark scripts run end to end with tiny settings (their figures come from real runs)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.slow
def test_gpu_throughput_runs_on_cpu_with_tiny_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = load("gpu_throughput")
    argv = ["--device", "cpu", "--image-size", "16", "--base-channels", "8", "--batch-sizes", "4", "8"]
    argv += ["--steps", "2", "--warmup", "2", "--repeats", "1", "--scenes", "4", "--peak-tflops", "1", "--json", str(tmp_path / "t.json")]
    rows = bench.main(argv)
    assert [(r.what, r.batch_size) for r in rows] == [("bare eager", 4), ("library", 4), ("bare eager", 8), ("library", 8)]
    assert all(r.images_per_s > 0 and r.ms_per_step > 0 for r in rows)
    # FLOPs and the peak turn images/s into TFLOP/s and its share of the peak.
    assert all(r.tflops is not None and r.peak_fraction == pytest.approx(r.tflops) for r in rows)
    out = capsys.readouterr().out
    assert "vs bare" in out and "renderer, first pass at 16 x 16: 4 scenes" in out
    report = json.loads((tmp_path / "t.json").read_text())
    assert report["renderer"]["images"] == 12 and len(report["rows"]) == 4 and report["flops_per_image"] > 0


def test_known_cards_have_a_bf16_peak() -> None:
    bench = load("gpu_throughput")
    names = {"NVIDIA H100 80GB HBM3": 989.4, "NVIDIA H100 PCIe": 756.0, "NVIDIA H200": 989.4, "NVIDIA A100-SXM4-80GB": 312.0}
    for name, peak in names.items():
        assert next(p for card, p in bench.BF16_PEAK_TFLOPS.items() if card in name) == peak


def test_ablation_speed_times_every_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = {
        "recipe": None, "images": 16,
        "base": {"image_size": 16, "unet.base_channels": 8, "unet.channel_mults": [1, 2], "unet.attention_stages": [1],
                 "unet.norm_groups": 4, "unet.num_heads": 2, "trainer.batch_size": 4},
        "variants": {"baseline": {}, "wide": {"unet.base_channels": 16}},
    }  # fmt: skip
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    out = load("ablation_speed").main(["--plan", str(tmp_path / "plan.json"), "--rounds", "2", "--steps", "1", "--json", str(tmp_path / "s.json")])
    assert list(out) == ["baseline", "wide"] and all(len(v["step_seconds"]) == 2 for v in out.values())
    assert out["wide"]["parameters"] > 3 * out["baseline"]["parameters"]
    assert "| wide |" in capsys.readouterr().out and json.loads((tmp_path / "s.json").read_text()) == out
