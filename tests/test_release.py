"""The release check (scripts/check_release.py): __version__ and CHANGELOG.md agree."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_release.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("check_release", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_release = _load_script()


def _write(tmp_path: Path, version: str, changelog: str) -> tuple[Path, Path]:
    init = tmp_path / "__init__.py"
    init.write_text(f'"""Doc."""\n\n__version__ = "{version}"\n', encoding="utf-8")
    log = tmp_path / "CHANGELOG.md"
    log.write_text(changelog, encoding="utf-8")
    return log, init


def test_repository_version_and_changelog_agree():
    """The command CI runs passes on the repository itself."""
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "release check passed" in result.stdout


def test_version_matches_installed_package():
    import clevr_diffusion

    assert check_release.package_version(ROOT / "src" / "clevr_diffusion" / "__init__.py") == clevr_diffusion.__version__


def test_passes_with_empty_unreleased_section(tmp_path):
    log, init = _write(
        tmp_path, "1.2.0", "# Changelog\n\n## [Unreleased]\n\n## [1.2.0] - 2026-01-31\n\n- x\n\n## [1.1.0] - 2025-12-01\n"
    )
    assert check_release.check(log, init) == []
    assert check_release.main(["--changelog", str(log), "--init", str(init)]) == 0


@pytest.mark.parametrize(
    ("version", "changelog", "message"),
    [
        # The release's changes still sit under [Unreleased]: no section for the version.
        ("1.2.0", "## [Unreleased]\n\n- x\n\n## [1.1.0] - 2025-12-01\n", "no dated section `## [1.2.0]"),
        # The changelog was released but __version__ was not bumped.
        ("1.1.0", "## [Unreleased]\n\n## [1.2.0] - 2026-01-31\n\n## [1.1.0] - 2025-12-01\n", "newest release is '1.2.0'"),
        # A section without its date.
        ("1.2.0", "## [1.2.0]\n\n- x\n", "is not `## [X.Y.Z] - YYYY-MM-DD`"),
        # A date that is not a date.
        ("1.2.0", "## [1.2.0] - 2026-13-40\n", "no valid date"),
        # The same version twice.
        ("1.2.0", "## [1.2.0] - 2026-01-31\n\n## [1.2.0] - 2025-12-01\n", "a version twice"),
    ],
)
def test_fails_when_version_and_changelog_disagree(tmp_path, capsys, version, changelog, message):
    log, init = _write(tmp_path, version, changelog)
    problems = check_release.check(log, init)
    assert any(message in problem for problem in problems), problems
    assert check_release.main(["--changelog", str(log), "--init", str(init)]) == 1
    assert "release check failed" in capsys.readouterr().err
