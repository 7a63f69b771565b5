"""Time another git revision of the library beside the working tree's, in one benchmark run.

A benchmark that takes ``--compare-to REF`` extracts REF's ``src/`` to a temporary folder and
runs its measurement in child processes that import the library from there (``PYTHONPATH``
comes before the installed package), alternating with children on the working tree, so both
see the same machine load.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def extract_src(ref: str, into: Path) -> Path:
    """The ``src/`` folder of git revision ``ref``, extracted under ``into``."""
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def child_env(src: Path | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus ``extra``, importing the library from ``src`` if given."""
    env = {**os.environ, **(extra or {})}
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env
