"""Without Chromium the browser tests skip, except under CI=true, where they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def run_browser_tests(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["SMTPKIT_TEST_CHROMIUM"] = str(tmp_path / "no-chromium")
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # faster; these tests need no plugin
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            str(HERE / "test_capture_browser.py"),
            "-k",
            "search",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("ci", [False, True], ids=["local", "ci"])
def test_a_missing_browser_skips_locally_and_fails_under_ci(tmp_path: Path, ci: bool) -> None:
    result = run_browser_tests(tmp_path, ci)
    missing = f"{tmp_path / 'no-chromium'} is not installed"
    assert missing in result.stdout, result.stdout
    if ci:
        assert result.returncode == 1
        assert "the browser tests need Chromium under CI" in result.stdout
    else:
        assert result.returncode == 0
        assert "1 skipped" in result.stdout
