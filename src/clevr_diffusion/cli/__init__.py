"""The ``clevr-diffusion`` command: train, sample, evaluate, make data, export models, run the demo."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from ..model_folder import HubUnreachableError

# The command modules import torch and the library inside their `run` functions only, so building
# the parser (`--help`, a usage error) stays well under a second.
from . import ablate, data, demo, evaluate, evaluator, export, push, render, sample, train
from .options import resolve_device

__all__ = ["USER_ERRORS", "build_parser", "main"]

COMMANDS = (demo, train, ablate, sample, evaluate, data, render, evaluator, push, export)

USER_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    HubUnreachableError,
)
"""Exceptions that mean bad input or a bad environment, the user's to fix: `main` prints them as one
line (no traceback unless --debug). Any other exception is a bug and keeps its traceback."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other user error."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE`` with a pointer to --help, and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``clevr-diffusion`` command."""
    parser = _Parser(
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
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error instead of a one-line message"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clevr-diffusion`` command; returns the exit status.

    A `USER_ERRORS` exception ends the command with one line on stderr and status 2 (with
    ``--debug``, it is raised); a usage error exits with status 2 (`SystemExit`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if hasattr(args, "device"):  # every command's --device: checked, or the default, before any work
            args.device = resolve_device(args.device)
        return int(args.run(args) or 0)
    except USER_ERRORS as error:
        if args.debug:
            raise
        # Bad input is the user's to fix: a one-line message, not a traceback.
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"clevr-diffusion {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; a training run resumes from its last checkpoint when started again", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
