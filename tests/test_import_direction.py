"""The I/O-free parsers must stay I/O-free: they import no asyncio, socket or ssl.

Each module is imported in a fresh interpreter, which then reports which of
the I/O modules the import pulled in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IO_MODULES = ["asyncio", "socket", "ssl", "selectors", "smtpkit.smtp", "smtpkit._connection"]

PURE_MODULES = [
    "smtpkit._grammar",
    "smtpkit._data",
    "smtpkit._syntax",
    "smtpkit.proxy_protocol",
    "smtpkit.proxy_protocol._types",
    "smtpkit.proxy_protocol._tlv",
    "smtpkit.proxy_protocol._data",
    "smtpkit.proxy_protocol._v1",
    "smtpkit.proxy_protocol._v2",
    "smtpkit.proxy_protocol._header",
    "smtpkit.proxy_protocol._trust",
    "smtpkit.proxy_protocol._compat",
    "smtpkit.auth.sasl",
    "smtpkit._replies",
    "smtpkit._reply_check",
]

SCRIPT = """
import importlib, json, sys
before = set(sys.modules)
importlib.import_module(sys.argv[1])
wanted = json.loads(sys.argv[2])
print(json.dumps(sorted(name for name in wanted if name in sys.modules and name not in before)))
"""


def imported_io_modules(module: str) -> list[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, module, json.dumps(IO_MODULES)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found: list[str] = json.loads(result.stdout)
    return found


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_imports_no_io(module: str) -> None:
    try:
        __import__(module)
    except ModuleNotFoundError:
        pytest.skip(f"{module} is not there")
    assert imported_io_modules(module) == []


def test_the_check_can_see_io_imports() -> None:
    # The protocol class does use asyncio: the check must notice.
    assert "asyncio" in imported_io_modules("smtpkit.smtp")
