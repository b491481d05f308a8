"""A pytest plugin that makes sure the tests run against the compiled build.

``bench/mypyc/test.sh`` loads it (``-p compiled_check``): at the start of the session it
checks that ``smtpkit`` and its compiled modules come from the build directory, not from
the checkout, and says so in the report header.
"""

from __future__ import annotations

import importlib

import pytest

#: Modules compiled in every build (``build.py --modules`` may leave the others out).
COMPILED = ("smtpkit._data",)
CORE = ("smtpkit._connection", "smtpkit._commands", "smtpkit.smtp", "smtpkit._data")


def _files(names: tuple[str, ...] = COMPILED) -> list[str]:
    return [importlib.import_module(name).__file__ or "" for name in names]


def pytest_configure(config: pytest.Config) -> None:
    """Stop before collecting unless the compiled modules are the ones imported."""
    wrong = [name for name in _files() if not name.endswith(".so")]
    if wrong:
        raise pytest.UsageError(f"not the compiled build: {', '.join(wrong)}")


def pytest_report_header(config: pytest.Config) -> str:
    """Say which of the protocol core's modules the tests run compiled."""
    compiled = [name for name, file in zip(CORE, _files(CORE), strict=True) if file.endswith(".so")]
    return f"smtpkit from {_files()[0].rsplit('/', 2)[0]}; compiled: {', '.join(compiled)}"
