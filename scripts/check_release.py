#!/usr/bin/env python3
"""Check that the package version and CHANGELOG.md agree, before tagging or uploading a release.

Passes when ``__version__`` in ``src/clevr_diffusion/__init__.py`` has a dated section
``## [X.Y.Z] - YYYY-MM-DD`` in CHANGELOG.md and that section is the newest released one (the
first dated section; ``## [Unreleased]`` above it is allowed). Otherwise it prints what is
wrong and exits with status 1.

Usage (from the repository root; CI runs it before the tests)::

    python3 scripts/check_release.py
    python3 scripts/check_release.py --changelog CHANGELOG.md --init src/clevr_diffusion/__init__.py

It reads both files as text (it does not import the package), so it needs only the standard
library.
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERSION_LINE = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)
SECTION = re.compile(r"^## \[(?P<name>[^\]]+)\](?P<rest>.*)$", re.MULTILINE)
RELEASED = re.compile(r"^ - (?P<date>\d{4}-\d{2}-\d{2})\s*$")
SEMVER = re.compile(r"^\d+\.\d+\.\d+$")


def package_version(init_file: Path) -> str:
    """The ``__version__`` string assigned in ``init_file``."""
    match = VERSION_LINE.search(init_file.read_text(encoding="utf-8"))
    if match is None:
        raise ValueError(f"{init_file}: no line `__version__ = \"X.Y.Z\"`")
    return match.group(1)


def released_versions(changelog: str) -> list[tuple[str, str]]:
    """The ``(version, date)`` of every dated ``## [X.Y.Z] - YYYY-MM-DD`` section, newest first.

    Raises:
        ValueError: A section other than ``[Unreleased]`` is not of that form, or its date is
            not a real date.
    """
    released = []
    for match in SECTION.finditer(changelog):
        name, rest = match.group("name"), match.group("rest")
        if name == "Unreleased":
            continue
        dated = RELEASED.match(rest)
        if not SEMVER.match(name) or dated is None:
            raise ValueError(f"CHANGELOG section {match.group(0)!r} is not `## [X.Y.Z] - YYYY-MM-DD`")
        try:
            datetime.date.fromisoformat(dated.group("date"))
        except ValueError:
            raise ValueError(f"CHANGELOG section {match.group(0)!r} has no valid date") from None
        released.append((name, dated.group("date")))
    return released


def check(changelog_file: Path, init_file: Path) -> list[str]:
    """The problems found (an empty list when version and changelog agree)."""
    version = package_version(init_file)
    try:
        released = released_versions(changelog_file.read_text(encoding="utf-8"))
    except ValueError as error:
        return [str(error)]
    versions = [name for name, _ in released]
    problems = []
    if version not in versions:
        problems.append(
            f"__version__ is {version!r} ({init_file.name}) but {changelog_file.name} has no dated section "
            f"`## [{version}] - YYYY-MM-DD`: rename `## [Unreleased]` to it and add an empty `## [Unreleased]` above"
        )
    elif versions[0] != version:
        problems.append(
            f"{changelog_file.name}'s newest release is {versions[0]!r}, but __version__ is {version!r}: "
            f"bump __version__ in {init_file} or fix the changelog"
        )
    if len(set(versions)) != len(versions):
        problems.append(f"{changelog_file.name} has a version twice: {versions}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run the check; 0 when it passes, 1 when it does not."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changelog", type=Path, default=ROOT / "CHANGELOG.md")
    parser.add_argument("--init", type=Path, default=ROOT / "src" / "clevr_diffusion" / "__init__.py")
    args = parser.parse_args(argv)
    problems = check(args.changelog, args.init)
    if problems:
        for problem in problems:
            print(f"release check failed: {problem}", file=sys.stderr)
        return 1
    version = package_version(args.init)
    date = dict(released_versions(args.changelog.read_text(encoding="utf-8")))[version]
    print(f"release check passed: __version__ {version} is the newest CHANGELOG release ({date})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
