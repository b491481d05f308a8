"""``mypy --strict`` on a typed App, and on one with deliberate type errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TYPING = ROOT / "tests" / "typing"

pytest.importorskip("mypy")


def mypy(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_typed_app_passes_mypy_strict() -> None:
    result = mypy(TYPING / "typed_app.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_type_errors_are_reported_where_expected() -> None:
    path = TYPING / "bad_app.py"
    expected = {
        number
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "# error:" in line
    }
    result = mypy(path)
    assert result.returncode == 1, result.stdout + result.stderr
    reported = {
        int(found.group(1))
        for found in re.finditer(r"^[^:\n]*bad_app\.py:(\d+): error:", result.stdout, re.M)
    }
    assert len(expected) == 6
    assert reported == expected, result.stdout
