"""``clevr-diffusion demo``: the bundled model draws and scores the i-CLEVR test grids offline.

``demo --train`` is the whole pipeline instead: render a small data set, train a small model
for a few minutes, draw the ``test.json`` grid.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from ..constants import CONDITION_SETS, DEFAULT_MODEL, SAMPLING_PRESETS
from .options import add_device_option, add_model_option, check_output_dir, positive_int

logger = logging.getLogger(__name__)

DEMO_PRESET = "unipc-10"
"""Sampler of the demo when the model saves no preset: 10 UniPC steps, the fastest preset."""
TRAIN_GUIDANCE = 2.0
"""Guidance of the ``--train`` demo's grid (its freshly trained model saves 1, no guidance)."""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "demo",
        help="draw and score the test.json and new_test.json grids with the bundled model (--train: train one first)",
        description=(
            f"Offline demo, sized for a 2-core CPU: the model bundled with the package\n"
            f"({DEFAULT_MODEL}) draws the 32 label sets of the benchmark's test.json and the 32 of\n"
            "new_test.json with a fast sampler, saves the two 8 x 4 grids (OUTPUT_DIR/test_grid.png,\n"
            "OUTPUT_DIR/new_test_grid.png) and prints the bundled evaluator's accuracy on each,\n"
            "in well under a minute. It runs `evaluate`, so OUTPUT_DIR also holds what that\n"
            "writes: the images (images/test/0.png ...), the denoising row and report.md.\n\n"
            "With --train it runs the whole pipeline instead, in a few minutes: renders an\n"
            "i-CLEVR-style data set at 64 x 64 with the built-in renderer, trains a small\n"
            "ConditionalUNet on it at 32 x 32 pixels, then samples the 32 label sets of test.json\n"
            "into an 8 x 4 grid. Run it again to continue training from the last checkpoint\n"
            "(raise --steps)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output-dir", type=Path, default=Path("demo"), help="where everything goes (default: demo)")
    add_model_option(parser)
    parser.add_argument(
        "--preset",
        choices=tuple(SAMPLING_PRESETS),
        default=None,
        help=f"sampling preset (default: the model's saved preset, else {DEMO_PRESET}; ddim-50 with --train)",
    )
    parser.add_argument(
        "--guidance",
        type=float,
        default=None,
        help=f"classifier-free guidance scale (default: the model's saved one; {TRAIN_GUIDANCE:g} with --train)",
    )
    parser.add_argument("--seed", type=int, default=0)
    add_device_option(parser, "where to sample, score and train")
    training = parser.add_argument_group("training (with --train)")
    training.add_argument(
        "--train", action="store_true", help="make a data set and train a small model for a few minutes first"
    )
    training.add_argument(
        "--steps", type=positive_int, default=800, help="training steps (default: 800, about 4 minutes on 2 cores)"
    )
    training.add_argument(
        "--scenes", type=positive_int, default=600, help="scenes to render (3 nested frames each; default: 600)"
    )
    training.add_argument("--image-size", type=positive_int, default=32, help="training image side (default: 32)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command."""
    if args.train and args.model is not None:
        raise ValueError("--model and --train exclude each other: --train trains its own model")
    check_output_dir(args.output_dir, "--output-dir")
    if args.train:
        return _train_and_sample(args)
    return _sample_pretrained(args)


def _sample_pretrained(args: argparse.Namespace) -> int:
    """The default demo: `evaluate` a pretrained model on both condition files, quickly."""
    from ..diffusion.sampler import DDPMSampler
    from ..diffusion.settings import SamplingSettings
    from ..evaluation.evaluate import evaluate
    from ..evaluation.evaluator import ClevrEvaluator
    from ..model_folder import bundled_model_name

    started = time.perf_counter()
    sampler = DDPMSampler.from_pretrained(args.model, device=args.device)
    evaluator = ClevrEvaluator(device=args.device)
    settings = SamplingSettings(
        preset=args.preset or sampler.config.preset or DEMO_PRESET, guidance_scale=args.guidance
    )
    chosen = sampler.resolve(settings)
    size = chosen.output_size or chosen.image_size
    name = bundled_model_name(args.model) or args.model
    print(
        f"model: {name}, {sampler.model.num_parameters / 1e6:.1f} M parameters, {size} x {size} images; "
        f"sampler: {chosen.method}, {chosen.num_inference_steps} steps, guidance {chosen.guidance_scale:g}"
    )
    loaded = time.perf_counter()
    # Smaller models draw 32 x 32 images: the evaluator resizes them to its 64 x 64, no news in a demo.
    evaluator_log = logging.getLogger("clevr_diffusion.evaluation.evaluator")
    level = evaluator_log.level
    evaluator_log.setLevel(logging.ERROR)
    try:
        result = evaluate(sampler, args.output_dir, evaluator, CONDITION_SETS, seed=args.seed, settings=settings)
    finally:
        evaluator_log.setLevel(level)
    for scored in result.files.values():
        print(
            f"{scored.name}.json: accuracy {scored.accuracy:.3f} ({scored.first.hits}/{scored.first.total} objects "
            f"found by the bundled evaluator), grid (8 x 4): {scored.grid}"
        )
    print(f"report: {result.report_md}")
    print(f"time: {loaded - started:.1f} s to load, {time.perf_counter() - loaded:.1f} s to draw and score")
    print('more: clevr-diffusion sample --labels "red sphere, cyan cube" --out one.png; clevr-diffusion demo --train')
    return 0


def _train_and_sample(args: argparse.Namespace) -> int:
    """``--train``: make data, train a small model, draw the test.json grid."""
    import torch

    from ..data.dataset import ClevrDataset
    from ..diffusion.noise import NoiseConfig
    from ..diffusion.sampler import DDPMSampler
    from ..labels import load_conditions
    from ..models.unet import ConditionalUNet
    from ..render.dataset_writer import make_dataset
    from ..training.config import TrainerConfig
    from ..training.trainer import DDPMTrainer

    started = time.perf_counter()
    out: Path = args.output_dir
    data_dir = make_dataset(
        out / "data", num_scenes=args.scenes, width=64, height=64, seed=args.seed, device=args.device
    )
    dataset = ClevrDataset(data_dir, image_size=args.image_size, preload=True)
    print(f"data: {len(dataset)} images in {data_dir}")

    torch.manual_seed(args.seed)
    model = ConditionalUNet(
        base_channels=32, channel_mults=(1, 2, 4), attention_stages=(2,), dropout=0.0, sample_size=args.image_size
    )
    print(f"model: ConditionalUNet, {model.num_parameters / 1e6:.2f} M parameters")
    config = TrainerConfig(
        output_dir=str(out / "run"),
        max_steps=args.steps,
        batch_size=16,
        learning_rate=1e-3,
        warmup_steps=min(50, args.steps // 4),
        lr_schedule="cosine",
        ema_decay=0.995,
        checkpoint_every=200,
        sample_every=-1,
        log_every=10,
        seed=args.seed,
        cpu=torch.device(args.device).type == "cpu",
    )
    trainer = DDPMTrainer(model, dataset, NoiseConfig(), config)
    model_dir = trainer.train()
    trained = time.perf_counter()

    sampler = DDPMSampler.from_pretrained(model_dir, device=args.device)
    guidance = TRAIN_GUIDANCE if args.guidance is None else args.guidance
    output = sampler.sample(load_conditions("test"), preset=args.preset or "ddim-50", guidance_scale=guidance, seed=args.seed)
    grid = output.save_grid(out / "test_grid.png", nrow=8, upscale=2)
    losses = [row["loss"] for row in trainer.metrics()]
    print(f"loss: {losses[0]:.4f} at the start, {losses[-1]:.4f} at the end")
    print(f"time: {trained - started:.0f} s to make data and train, {time.perf_counter() - trained:.0f} s to sample")
    print(f"grid of test.json (8 x 4): {grid}")
    print(f"loss curve: {out / 'run' / 'loss.png'}")
    print(f"model: {model_dir}  (try: clevr-diffusion sample --model {model_dir} --labels \"red sphere, cyan cube\")")
    return 0
