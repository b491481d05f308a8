"""The I/O-free parsers must stay I/O-free: they import no asyncio, socket or ssl.

Each module is imported in a fresh interpreter, which then reports which of
the I/O modules the import pulled in. Inside a package, where importing any
module runs the package's ``__init__`` first, the import statements are read
instead.
"""

from __future__ import annotations

import ast
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
    "smtpkit._constants",
    "smtpkit._rules",
    "smtpkit._transfer",
    "smtpkit._dsn",
    "smtpkit._received",
    "smtpkit._xclient",
]

# Bottom modules: every layer may import them, so they import nothing of smtpkit.
BOTTOM_MODULES = ["smtpkit._constants", "smtpkit._rules"]
# Importing any smtpkit module imports the package (whose names load lazily) and its version.
ALWAYS_IMPORTED = {"smtpkit", "smtpkit._version"}

# The config package, in layers: each module imports only the modules before it.
CONFIG_LAYERS = [
    "smtpkit.config._base",
    "smtpkit.config._bridge",
    "smtpkit.config._sections",
    "smtpkit.config._loading",
    "smtpkit.config._server",
    "smtpkit.config",
]
# What the config package may import from the rest of smtpkit: the rate store's protocol, for
# the type of rate_limits.store. Never the protocol, the App or the CLI, which build on config.
CONFIG_OUTSIDE = {"smtpkit.ratelimit"}

SCRIPT = """
import importlib, json, sys
before = set(sys.modules)
importlib.import_module(sys.argv[1])
wanted = json.loads(sys.argv[2])
print(json.dumps(sorted(name for name in wanted if name in sys.modules and name not in before)))
"""


SMTPKIT_SCRIPT = """
import importlib, json, sys
before = set(sys.modules)
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(n for n in set(sys.modules) - before if n.split(".")[0] == "smtpkit")))
"""


def _run(script: str, *args: str) -> list[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
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


def imported_io_modules(module: str) -> list[str]:
    return _run(SCRIPT, module, json.dumps(IO_MODULES))


def imported_smtpkit_modules(module: str) -> set[str]:
    """The smtpkit modules that importing ``module`` (in a fresh interpreter) loads."""
    return set(_run(SMTPKIT_SCRIPT, module))


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


@pytest.mark.parametrize("module", BOTTOM_MODULES)
def test_bottom_module_imports_nothing_of_smtpkit(module: str) -> None:
    assert imported_smtpkit_modules(module) - {module} - ALWAYS_IMPORTED == set()


def test_the_io_shell_imports_nothing_of_auth() -> None:
    found = imported_smtpkit_modules("smtpkit._connection")
    assert "smtpkit._constants" in found  # the check sees what the shell imports
    assert sorted(name for name in found if name.startswith("smtpkit.auth")) == []


def test_the_check_can_see_auth_imports() -> None:
    assert "smtpkit.auth._command" in imported_smtpkit_modules("smtpkit.smtp")


def smtpkit_imports(module: str) -> set[str]:
    """The smtpkit modules that ``module``'s import statements name (relative ones resolved)."""
    path = ROOT.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    named = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            if node.module is None:  # from . import name
                named.update(f"{base}.{alias.name}" for alias in node.names)
            else:
                named.add(".".join(filter(None, [base, node.module])))
    return {name for name in named if name.split(".")[0] == "smtpkit"}


def test_the_config_layers_are_every_module_of_the_package() -> None:
    files = sorted((ROOT / "smtpkit" / "config").glob("*.py"))
    found = {"smtpkit.config." + file.stem for file in files if file.stem != "__init__"}
    assert found | {"smtpkit.config"} == set(CONFIG_LAYERS)


@pytest.mark.parametrize("module", CONFIG_LAYERS)
def test_a_config_module_imports_only_the_layers_before_it(module: str) -> None:
    below = set(CONFIG_LAYERS[: CONFIG_LAYERS.index(module)])
    assert smtpkit_imports(module) - below - CONFIG_OUTSIDE == set()


def test_the_config_check_can_see_relative_imports() -> None:
    assert smtpkit_imports("smtpkit.config._sections") == {
        "smtpkit.config._base",
        "smtpkit.ratelimit",
    }


def test_the_config_package_imports_only_itself_and_the_rate_store() -> None:
    found = imported_smtpkit_modules("smtpkit.config")
    assert set(CONFIG_LAYERS) <= found
    assert found - set(CONFIG_LAYERS) - CONFIG_OUTSIDE - ALWAYS_IMPORTED == set()
