"""Run the plugin's fixtures inside pytest itself, with pytester.

``run_inner(source, passed=N)`` writes ``source`` as a test module in a fresh
folder and runs pytest on it in this process (the plugin is loaded through its
entry point, as in a user's project), then checks the outcome counts. The
folder also holds ``helpers.py``, whose ``send(server, subject)`` mails one
message with smtplib.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import pytest

# Imported here, once: pytester forgets the modules an inner run imported.
# cryptography's compiled bindings cannot be imported a second time, and a
# second copy of smtpkit.testing's modules would bring a second copy of its
# exception classes, which the first copy's names would not catch.
import trustme  # noqa: F401

import smtpkit.testing._factory
import smtpkit.testing._server  # noqa: F401

pytest_plugins = ["pytester"]

# hypothesis's plugin costs more than a second per in-process run; none of
# these inner runs uses it.
INI = """\
[pytest]
addopts = --strict-markers -p no:cacheprovider -p no:hypothesispytest
asyncio_default_fixture_loop_scope = function
"""

# Imported by the inner test modules as ``from helpers import send``.
HELPERS = """\
import smtplib


def send(server, subject="hello", sender="a@example.org", to=("b@example.org",)):
    with smtplib.SMTP(server.host, server.port) as client:
        return client.sendmail(sender, list(to), f"Subject: {subject}\\r\\n\\r\\nbody\\r\\n")
"""

RunInner = Callable[..., pytest.RunResult]


@pytest.fixture
def run_inner(pytester: pytest.Pytester) -> RunInner:
    """Write a test module, run it with pytest in-process, check the outcomes."""
    pytester.makeini(INI)
    pytester.makepyfile(helpers=HELPERS)

    def run(
        source: str, *args: str, passed: int = 0, failed: int = 0, errors: int = 0
    ) -> pytest.RunResult:
        pytester.makepyfile(test_inner=textwrap.dedent(source))
        result = pytester.runpytest(*args)
        result.assert_outcomes(passed=passed, failed=failed, errors=errors)
        return result

    return run
