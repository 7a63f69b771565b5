"""``clevr-diffusion ablate``: train variants of a recipe on one budget and compare their accuracy."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .options import add_device_option, add_evaluator_options, check_output_dir, evaluator_option, positive_int

if TYPE_CHECKING:
    from ..ablation.plan import AblationPlan


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "ablate",
        help="train variants of a recipe on the same data and budget; table and plot of accuracy",
        description=(
            "Train several variants of one recipe on the same data, seeds and image budget, score "
            "each at fixed points along the way (label accuracy on test.json and new_test.json "
            "with the bundled evaluator, several draws, the recipe's sampler) and write "
            "OUTPUT/summary.md, summary.json, accuracy.png (accuracy against training images, one "
            "curve a variant, ± one std over draws) and accuracy_time.png. A variant is a set of "
            "changes to the recipe by dotted key: image_size, unet.FIELD, noise.FIELD, "
            "trainer.FIELD, sampling.FIELD (the fields of UNetConfig, NoiseConfig, TrainerConfig, "
            "SamplingConfig). Give them in a plan file (YAML or JSON: recipe, base, variants, "
            "images, eval_at, draws, eval_seed, files, data, render_scenes, render_seed) or with "
            "--vary KEY=V1,V2 (the baseline plus one variant a value, one factor at a time). Run "
            "the same command again to resume; under `accelerate launch -m clevr_diffusion.cli "
            "ablate ...` every GPU trains and the first one scores.\n\n"
            "examples:\n"
            "  clevr-diffusion ablate --vary noise.beta_schedule=squaredcos_cap_v2 "
            "--vary unet.base_channels=32,64 --images 60000 --output-dir ablations/quick\n"
            "  clevr-diffusion ablate --plan examples/ablations/cpu_32px.yaml --output-dir ablations/cpu\n"
            "  clevr-diffusion ablate --plan plan.yaml --dry-run   # the variants and their steps, no training"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--plan", type=Path, default=None, help="a plan file (.yaml, .yml or .json)")
    parser.add_argument(
        "--output-dir", type=Path, default=Path("ablations/ablation"), help="the study's folder (default: ablations/ablation)"
    )
    parser.add_argument("--overwrite", action="store_true", help="delete a study already in --output-dir first")
    parser.add_argument("--dry-run", action="store_true", help="print the variants, their changes and steps, and stop")
    what = parser.add_argument_group("variants (added to the plan file's)")
    what.add_argument(
        "--recipe", default=None, metavar="NAME|null", help="the base recipe: a preset (cpu-small, gpu-base) or null for the defaults"
    )
    what.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="change the base recipe of every variant; repeatable"
    )
    what.add_argument(
        "--vary", action="append", default=[], metavar="KEY=V1,V2", help="one variant per value, each beside the baseline; repeatable"
    )
    budget = parser.add_argument_group("budget and scoring (override the plan file)")
    budget.add_argument("--images", type=positive_int, default=None, help="training images per variant (default: 60000)")
    budget.add_argument(
        "--eval-at", default=None, metavar="N,N,...", help="training images at which to score (default: 4 even points)"
    )
    budget.add_argument("--draws", type=positive_int, default=None, help="draws per condition file and point (default: 3)")
    budget.add_argument("--eval-seed", type=int, default=None, help="first sampling seed (default: 1000)")
    budget.add_argument(
        "--conditions", action="append", default=None, metavar="NAME|FILE", help="condition file to score; repeatable (default: test, new_test)"
    )
    data = budget.add_mutually_exclusive_group()
    data.add_argument("--data", type=Path, default=None, help="an i-CLEVR-format folder to train on (default: rendered data)")
    data.add_argument("--render-scenes", type=positive_int, default=None, help="scenes of the rendered data (default: 6003)")
    add_evaluator_options(parser)
    add_device_option(parser, "where to score (training follows each recipe's trainer.cpu)")
    parser.set_defaults(run=run)


def build_plan(args: argparse.Namespace) -> AblationPlan:
    """The plan the options ask for: the plan file's (or the defaults), with the options applied."""
    from ..ablation.plan import AblationPlan, PlanError, load_plan, vary_variants
    from ..training.recipe import RecipeError, parse_assignment, parse_value

    plan = load_plan(args.plan) if args.plan is not None else AblationPlan()
    data: dict[str, Any] = plan.to_dict()
    if args.recipe is not None:
        data["recipe"] = None if args.recipe == "null" else args.recipe
    for text in args.set:
        try:
            key, value = parse_assignment(text)
        except RecipeError as error:
            raise PlanError(f"--set: {error}") from error
        data["base"][key] = parse_value(value)
    if args.vary:
        variants = dict(data["variants"])
        for name, changes in vary_variants(args.vary).items():
            variants.setdefault(name, changes)  # a plan file's own baseline is kept
        data["variants"] = variants
    if args.eval_at is not None:
        try:
            data["eval_at"] = [int(x) for x in args.eval_at.split(",")]
        except ValueError as error:
            raise PlanError(f"--eval-at takes whole numbers of images separated by commas, got {args.eval_at!r}") from error
    for option, field in (("images", "images"), ("draws", "draws"), ("eval_seed", "eval_seed"), ("render_scenes", "render_scenes")):
        if getattr(args, option) is not None:
            data[field] = getattr(args, option)
    if args.conditions:
        data["files"] = args.conditions
    if args.data is not None:
        data["data"] = str(args.data)
    plan = AblationPlan.from_dict(data)
    plan.recipes()  # every variant checked before anything is written
    return plan


def _dry_run(plan: AblationPlan) -> None:
    base = plan.base_recipe()
    print(f"base recipe: {plan.recipe or 'defaults'}, changed by {json.dumps(plan.base) if plan.base else 'nothing'}")
    print(f"images per variant: {plan.images:,}; scored at {', '.join(f'{p:,}' for p in plan.points)} images; "
          f"{plan.draws} draws of {', '.join(plan.files)}")  # fmt: skip
    for name, recipe in plan.recipes().items():
        images_per_step = recipe.images_per_step()
        changes = recipe.differences(base)
        shown = ", ".join(f"{k}={json.dumps(new)}" for k, (new, _) in changes.items()) or "(base)"
        print(f"  {name}: {shown}; {-(-plan.images // images_per_step):,} steps of {images_per_step} images (one process)")


def run(args: argparse.Namespace) -> int:
    """Run the command."""
    plan = build_plan(args)
    if args.dry_run:
        _dry_run(plan)
        return 0
    check_output_dir(args.output_dir, "--output-dir")
    from ..ablation.report import REPORT_FILES
    from ..ablation.runner import run_ablation

    evaluator = evaluator_option(args, args.device)
    report = run_ablation(plan, args.output_dir, evaluator=evaluator, device=args.device, overwrite=args.overwrite)
    print(report.markdown())
    print(f"report: {args.output_dir / REPORT_FILES['markdown']}, plot: {args.output_dir / REPORT_FILES['accuracy']}")
    return 0
