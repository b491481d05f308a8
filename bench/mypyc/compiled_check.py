"""A pytest plugin that makes sure the tests run against the compiled build.

``bench/mypyc/test.sh`` loads it (``-p compiled_check``): at the start of the session it
checks that ``smtpkit`` and its compiled modules come from the build directory, not from
the checkout, and says so in the report header.
"""

from __future__ import annotations

import importlib

import pytest

COMPILED = ("smtpkit._connection", "smtpkit._commands", "smtpkit.smtp", "smtpkit._data")


def _files() -> list[str]:
    return [importlib.import_module(name).__file__ or "" for name in COMPILED]


def pytest_configure(config: pytest.Config) -> None:
    """Stop before collecting unless the compiled modules are the ones imported."""
    wrong = [name for name in _files() if not name.endswith(".so")]
    if wrong:
        raise pytest.UsageError(f"not the compiled build: {', '.join(wrong)}")


def pytest_report_header(config: pytest.Config) -> str:
    """Name the compiled module the tests run against."""
    return f"smtpkit compiled with mypyc: {_files()[0]}"
