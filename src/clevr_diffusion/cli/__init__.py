"""The ``clevr-diffusion`` command: train, sample, evaluate, make data, export models, run the demo."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from . import data, demo, evaluate, evaluator, export, push, render, sample, train

__all__ = ["build_parser", "main"]

COMMANDS = (demo, train, sample, evaluate, data, render, evaluator, push, export)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``clevr-diffusion`` command."""
    parser = argparse.ArgumentParser(
        prog="clevr-diffusion",
        description=(
            "Train and sample label-conditioned diffusion models (DDPM) of CLEVR-style scenes.\n\n"
            "New here? Run `clevr-diffusion demo`: the model bundled with the package draws the 8 x 4 "
            "grids of the i-CLEVR test.json and new_test.json conditions in seconds, offline, and the "
            "bundled evaluator scores them (`demo --train` trains a small model first)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `clevr-diffusion COMMAND --help` for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clevr-diffusion`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        # Bad input is the user's to fix: a one-line message, not a traceback.
        print(f"clevr-diffusion {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; a training run resumes from its last checkpoint when started again", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
