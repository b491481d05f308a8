"""The Python versions the project claims are the ones it checks and tests.

``requires-python``, the classifiers, mypy's and ruff's target, the versions the test
command runs (scripts/test.sh) and the versions the README and docs/index.md name must
all say the same thing.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CLASSIFIER = re.compile(r"Programming Language :: Python :: (3\.\d+)$")


def claimed() -> list[str]:
    """The versions listed as classifiers, oldest first."""
    found = [
        match.group(1)
        for classifier in PYPROJECT["project"]["classifiers"]
        if (match := CLASSIFIER.match(classifier))
    ]
    return sorted(found, key=lambda version: tuple(map(int, version.split("."))))


def test_the_oldest_claimed_version_is_the_required_one_and_the_checked_one() -> None:
    versions = claimed()
    assert versions, "pyproject.toml lists no 'Programming Language :: Python :: 3.X'"
    oldest = versions[0]
    assert PYPROJECT["project"]["requires-python"] == f">={oldest}"
    assert PYPROJECT["tool"]["mypy"]["python_version"] == oldest
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py" + oldest.replace(".", "")


def test_the_claimed_versions_have_no_gap() -> None:
    minors = [int(version.split(".")[1]) for version in claimed()]
    assert minors == list(range(minors[0], minors[-1] + 1))


def test_the_test_command_runs_every_claimed_version() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text()
    found = re.search(r"^SUPPORTED=\(([^)]*)\)$", script, re.MULTILINE)
    assert found, "scripts/test.sh has no SUPPORTED=(...) line"
    assert found.group(1).split() == claimed()
    # mypy checks against the oldest claimed version's stubs (and the main Python's).
    assert re.search(r"^for stubs in " + re.escape(claimed()[0]) + r" ", script, re.MULTILINE)
    assert '--python-version "$stubs"' in script


def test_the_readme_and_the_docs_name_the_claimed_versions() -> None:
    versions = claimed()
    span = f"{versions[0]} to {versions[-1]}"
    for page in (ROOT / "README.md", ROOT / "docs" / "index.md"):
        assert span in page.read_text(), f"{page.name} does not say 'Python {span}'"
