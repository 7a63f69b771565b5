"""Ablations: plans from files and options, a tiny study end to end, resuming and refusing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clevr_diffusion import DDPMSampler
from clevr_diffusion.ablation import AblationPlan, AblationReport, PlanError, load_plan, run_ablation, vary_variants
from clevr_diffusion.ablation.plan import BASELINE, variant_folder
from clevr_diffusion.ablation.runner import RESULTS_NAME
from clevr_diffusion.cli import main
from clevr_diffusion.training.checkpoint import list_checkpoints
from clevr_diffusion.training.recipe import Recipe

# A 16 px network of about 80 k parameters that learns something in a few steps.
TINY_BASE = {
    "image_size": 16,
    "unet.base_channels": 8,
    "unet.channel_mults": [1, 2],
    "unet.attention_stages": [1],
    "unet.norm_groups": 4,
    "unet.num_heads": 2,
    "trainer.batch_size": 8,
    "trainer.warmup_steps": 0,
    "trainer.learning_rate": 1e-3,
    "trainer.sample_every": -1,
    "trainer.checkpoint_every": 0,
    "trainer.log_every": 1,
    "trainer.cpu": True,
    "sampling.preset": "unipc-10",
    "sampling.guidance_scale": 2.0,
}


@pytest.fixture
def conditions(tmp_path: Path) -> str:
    path = tmp_path / "few.json"
    path.write_text(json.dumps([["red cube"], ["blue sphere", "gray cylinder"], ["cyan cube"], ["green sphere"]]))
    return str(path)


def tiny_plan(conditions: str, **fields: object) -> AblationPlan:
    data: dict[str, object] = {
        "recipe": None, "base": TINY_BASE, "images": 32, "eval_at": [16, 32], "draws": 2, "files": [conditions],
        "render_scenes": 4, "variants": {BASELINE: {}, "cosine": {"noise.beta_schedule": "squaredcos_cap_v2"}},
    }  # fmt: skip
    data.update(fields)
    return AblationPlan.from_dict(data)


def test_plan_files_yaml_and_json_agree(tmp_path: Path) -> None:
    yaml_text = "recipe: null\nbase:\n  trainer.batch_size: 8\nimages: 100\nvariants:\n  a: {}\n  b: {unet.base_channels: 16}\n"
    (tmp_path / "p.yaml").write_text(yaml_text)
    plan = load_plan(tmp_path / "p.yaml")
    (tmp_path / "p.json").write_text(json.dumps(plan.to_dict()))
    assert load_plan(tmp_path / "p.json") == plan
    assert plan.points == (25, 50, 75, 100)
    assert plan.recipes()["b"].differences(plan.recipes()["a"]) == {"unet.base_channels": (16, 32)}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("images: 10\nvaraints: {}\n", "has no field"),
        ("variants:\n  a: {unet.depth: 3}\n", "variant 'a': no recipe setting 'unet.depth'"),
        ("images: 10\neval_at: [5, 20]\n", r"eval_at must lie in \[1, images = 10\]"),
        ("eval_at: [20, 10]\n", "eval_at must increase"),
        ("variants:\n  'a/b': {}\n  'a_b': {}\n", "would share the folder 'a_b'"),
        ("images: [\n", "is not valid YAML"),
        ("- 1\n", "must hold a mapping"),
    ],
)
def test_bad_plan_files_are_named(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PlanError, match=match) as error:
        load_plan(tmp_path / "p.yaml")
    assert "p.yaml" in str(error.value)


def test_vary_makes_one_variant_per_value_beside_the_baseline() -> None:
    variants = vary_variants(["noise.beta_schedule=squaredcos_cap_v2", "unet.channel_mults=[1,2,2],[1,2,4]"])
    assert variants == {
        BASELINE: {},
        "noise.beta_schedule=squaredcos_cap_v2": {"noise.beta_schedule": "squaredcos_cap_v2"},
        "unet.channel_mults=[1,2,2]": {"unet.channel_mults": [1, 2, 2]},
        "unet.channel_mults=[1,2,4]": {"unet.channel_mults": [1, 2, 4]},
    }
    assert variant_folder("unet.channel_mults=[1,2,2]") == "unet.channel_mults=_1_2_2"
    with pytest.raises(PlanError, match="expected KEY=VALUE"):
        vary_variants(["unet.base_channels"])


@pytest.mark.slow
def test_tiny_ablation_end_to_end_resumes_and_refuses(tmp_path: Path, conditions: str) -> None:
    out = tmp_path / "study"
    report = run_ablation(tiny_plan(conditions), out, progress=False)
    assert [v.name for v in report.variants] == [BASELINE, "cosine"]
    for variant in report.variants:
        assert variant.images == [16, 32] and len(variant.accuracy) == 2 and variant.parameters
        assert all(0.0 <= a <= 1.0 for a in variant.accuracy)
        folder = out / "variants" / variant_folder(variant.name)
        assert sorted(p.name for p in (folder / "grids").iterdir()) == ["few_00000016.png", "few_00000032.png"]
        assert [p.name for p in list_checkpoints(folder / "run" / "checkpoints")][-1] == "step_00000004"
    for name in ("summary.md", "summary.json", "accuracy.png", "accuracy_time.png", "plan.json", RESULTS_NAME):
        assert (out / name).is_file(), name
    assert AblationReport.read(out).to_dict() == report.to_dict()
    assert "| cosine | `noise.beta_schedule=\"squaredcos_cap_v2\"` |" in (out / "summary.md").read_text()
    recipe = Recipe.load(out / "variants" / "cosine" / "recipe.json")
    assert recipe.noise.beta_schedule == "squaredcos_cap_v2" and recipe.trainer.max_steps == 4
    saved = DDPMSampler.from_pretrained(out / "variants" / "cosine" / "run" / "model").config
    assert (saved.preset, saved.guidance_scale) == ("unipc-10", 2.0)  # the recipe's sampling, scored and saved

    # Started again, it does nothing; with its last score lost, it scores that point again alike.
    results = json.loads((out / RESULTS_NAME).read_text())
    assert len(results["points"]) == 4
    checkpoint = out / "variants" / "cosine" / "run" / "checkpoints" / "step_00000004"
    stamp = checkpoint.stat().st_mtime_ns
    (out / RESULTS_NAME).write_text(json.dumps({"points": results["points"][:3]}))
    run_ablation(tiny_plan(conditions), out, progress=False)
    assert json.loads((out / RESULTS_NAME).read_text())["points"][3]["accuracy"] == results["points"][3]["accuracy"]
    assert checkpoint.stat().st_mtime_ns == stamp  # not trained again

    # A new variant joins the study; a changed one, or other scoring settings, are refused.
    grown = tiny_plan(conditions, variants={BASELINE: {}, "cosine": {"noise.beta_schedule": "squaredcos_cap_v2"}, "lr": {"trainer.learning_rate": 3e-3}})
    assert [v.name for v in run_ablation(grown, out, progress=False).variants] == [BASELINE, "cosine", "lr"]
    with pytest.raises(PlanError, match="variant 'cosine' in .* was trained with another recipe .*noise.beta_schedule"):
        run_ablation(tiny_plan(conditions, variants={"cosine": {"noise.beta_schedule": "scaled_linear"}}), out, progress=False)
    with pytest.raises(PlanError, match="scored with other settings .*draws"):
        run_ablation(tiny_plan(conditions, draws=3), out, progress=False)
    report = run_ablation(tiny_plan(conditions, draws=1, eval_at=[32]), out, progress=False, overwrite=True)
    assert [v.images for v in report.variants] == [[32], [32]]


@pytest.mark.slow
def test_ablate_command_trains_and_reports(tmp_path: Path, conditions: str, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(tiny_plan(conditions, variants={BASELINE: {}}).to_dict()))
    out = tmp_path / "study"
    args = ["ablate", "--plan", str(plan), "--vary", "trainer.ema_decay=0.99", "--eval-at", "32", "--draws", "1", "--output-dir", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| trainer.ema_decay=0.99 | `trainer.ema_decay=0.99` |" in printed and "report:" in printed
    assert sorted(p.name for p in (out / "variants").iterdir()) == [BASELINE, "trainer.ema_decay=0.99"]


def test_ablate_dry_run_lists_variants_and_steps(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ablate", "--recipe", "cpu-small", "--vary", "unet.base_channels=32,64", "--images", "6400", "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "scored at 1,600, 3,200, 4,800, 6,400 images; 3 draws of test, new_test" in out
    assert "  unet.base_channels=64: unet.base_channels=64; 200 steps of 32 images" in out
    assert "  baseline: (base); 200 steps" in out


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--vary", "unet.base_chanels=3"], "did you mean 'unet.base_channels'"),
        (["--set", "trainer.learning_rate"], "--set: expected KEY=VALUE"),
        (["--eval-at", "10,x"], "--eval-at takes whole numbers"),
        (["--recipe", "gpu-bse"], "did you mean 'gpu-base'"),
    ],
)
def test_ablate_user_errors_are_one_line(capsys: pytest.CaptureFixture[str], extra: list[str], match: str) -> None:
    assert main(["ablate", "--dry-run", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and match in err, err


def test_ablation_folder_of_something_else_is_refused(tmp_path: Path, conditions: str) -> None:
    (tmp_path / "variants").mkdir()
    with pytest.raises(PlanError, match="holds files of something else"):
        run_ablation(tiny_plan(conditions), tmp_path, progress=False)
    shutil.rmtree(tmp_path / "variants")


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "examples" / "ablations").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_plans_are_valid(path: Path) -> None:
    plan = load_plan(path)
    recipes = plan.recipes()
    assert BASELINE in recipes and all(r.differences(recipes[BASELINE]) for n, r in recipes.items() if n != BASELINE)


@pytest.mark.slow
def test_two_processes_with_accelerate_launch(tmp_path: Path, conditions: str) -> None:
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate's launcher is installed with the package"
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(tiny_plan(conditions, draws=1, variants={BASELINE: {}}, render_scenes=6).to_dict()))
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    command = [
        accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "-m", "clevr_diffusion.cli", "ablate", "--plan", str(plan), "--output-dir", str(tmp_path / "study"),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    points = json.loads((tmp_path / "study" / RESULTS_NAME).read_text())["points"]
    # Two processes of 8 images a step: half the steps of one process, one score per point.
    assert [(p["images"], p["step"]) for p in points] == [(16, 1), (32, 2)]
    checkpoint = list_checkpoints(tmp_path / "study" / "variants" / BASELINE / "run" / "checkpoints")[-1]
    assert json.loads((checkpoint / "state.json").read_text())["num_processes"] == 2
