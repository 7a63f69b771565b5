"""Refresh the ``--help`` blocks of ``docs/cli.md`` from the real command.

Each block sits between ``<!-- help: COMMAND -->`` and ``<!-- /help -->`` markers (COMMAND is
``main`` for the top-level help). Run after changing an option:

    python docs/scripts/cli_help.py           # rewrites docs/cli.md in place
    python docs/scripts/cli_help.py --check   # exit 1 if the page is out of date

The help is rendered 88 columns wide, whatever the terminal.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "cli.md"
BLOCK = re.compile(r"(<!-- help: (?P<command>[\w-]+) -->\n).*?(<!-- /help -->)", re.S)


def help_text(command: str) -> str:
    args = [] if command == "main" else [command]
    env = dict(os.environ, COLUMNS="88")
    result = subprocess.run(
        [sys.executable, "-m", "clevr_diffusion.cli", *args, "--help"],
        capture_output=True, text=True, env=env, check=True,
    )
    return result.stdout.rstrip() + "\n"


def main() -> int:
    page = PAGE.read_text(encoding="utf-8")
    updated = BLOCK.sub(lambda m: f"{m.group(1)}```text\n{help_text(m['command'])}```\n{m.group(3)}", page)
    if "--check" in sys.argv[1:]:
        print("docs/cli.md is up to date" if updated == page else "docs/cli.md is out of date")
        return int(updated != page)
    PAGE.write_text(updated, encoding="utf-8")
    print(f"updated {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
