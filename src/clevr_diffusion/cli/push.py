"""``clevr-diffusion push``: upload a model folder to the Hugging Face Hub."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..model_folder import find_model_folder, push_folder  # light: huggingface_hub is imported inside


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register the command."""
    parser = commands.add_parser(
        "push",
        help="upload a trained model to the Hugging Face Hub",
        description=(
            "Upload a model folder (config.json, the safetensors weights, scheduler and sampler\n"
            "settings) to a Hugging Face Hub model repo as one commit, with a generated model card\n"
            "(README.md) unless the folder has a hand-written one. The repo is created if missing.\n"
            "Anyone can then load it with DDPMSampler.from_pretrained(REPO) or `--model REPO`.\n"
            "The token comes from --token, HF_TOKEN or `hf auth login`.\n\n"
            "examples:\n"
            "  clevr-diffusion push runs/base/model user/clevr-ddpm\n"
            "  clevr-diffusion push runs/base user/clevr-ddpm --private --branch step-10000"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", type=Path, help="a model folder, or a run folder (its model/ is pushed)")
    parser.add_argument("repo", help="Hub repo id, user/name or organization/name")
    parser.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its visibility)")
    parser.add_argument("--revision", "--branch", dest="revision", default=None, help="branch to push to, created if missing (default: main)")
    parser.add_argument("--token", default=None, help="Hub token with write access (default: HF_TOKEN or the saved login)")
    parser.add_argument("--commit-message", default=None, help="commit summary")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the command."""
    from huggingface_hub.errors import HfHubHTTPError

    folder = find_model_folder(args.path)

    try:
        url = push_folder(
            folder,
            args.repo,
            private=args.private or None,
            token=args.token,
            revision=args.revision,
            commit_message=args.commit_message,
            create_pr=args.create_pr,
        )
    except HfHubHTTPError as error:
        # Bad token, no write access, a name taken: the user's to fix, in one line.
        raise ValueError(f"the Hub refused the upload to {args.repo}: {str(error).splitlines()[0]}") from error
    print(f"pushed {folder} to {args.repo}: {url}")
    return 0
