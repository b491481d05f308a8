#!/usr/bin/env python3
"""Build a copy of smtpkit whose protocol core is compiled with mypyc (a measured prototype).

    python bench/mypyc/build.py                      # into bench/results/mypyc-build/
    python bench/mypyc/build.py --out /tmp/kit       # somewhere else
    PYTHONPATH=bench/results/mypyc-build python -c "import smtpkit._connection as m; print(m)"

The source tree is never touched: ``smtpkit/`` is copied into ``--out``, the copy is
patched (see ``PATCHES`` and ``NON_NATIVE`` below: what the real source would have to
change to compile), and the modules in ``MODULES`` are compiled in place with mypyc, so
that ``--out`` holds an importable ``smtpkit`` whose hot modules are C extensions and
whose other modules are the same Python as in the checkout.

The classes that make up the documented ``SMTP`` class (and the handlers) stay ordinary
Python classes (``@mypyc_attr(native_class=False)``): code subclasses them, patches their
methods on the class and on instances, and sets attributes of its own on instances,
which mypyc's native classes do not allow. Their methods are still compiled. The
internal helper classes (the DATA decoder, the transfer, the settings) are native.

Needs mypy (which ships mypyc), setuptools and a C compiler; run it with the project's
interpreter (``.venv/bin/python``), the one the compiled modules are built for.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_OUT = BENCH_DIR / "results" / "mypyc-build"

#: The modules compiled: the protocol core, the parsers it feeds, and the Sink handler.
MODULES = (
    "smtpkit/_connection.py",
    "smtpkit/_commands.py",
    "smtpkit/_xcommands.py",
    "smtpkit/smtp.py",
    "smtpkit/_replies.py",
    "smtpkit/_reply_check.py",
    "smtpkit/_data.py",
    "smtpkit/_transfer.py",
    "smtpkit/_grammar.py",
    "smtpkit/_constants.py",
    "smtpkit/handlers/_basic.py",
)

#: Classes kept as ordinary Python classes (their methods are compiled all the same).
NON_NATIVE = {
    "smtpkit/_connection.py": ("Connection",),
    "smtpkit/_commands.py": ("Commands",),
    "smtpkit/_xcommands.py": ("XCommands",),
    "smtpkit/smtp.py": ("SMTP",),
    "smtpkit/handlers/_basic.py": ("Sink", "Debugging"),
}

#: (file, regular expression, replacement): the source changes compilation needs.
#: mypyc type-checks the compiled modules in another order than mypy does, and cannot
#: infer the reply constants (read by _data.py, _grammar.py ...) in time: annotate them.
REGEX_PATCHES = ((r"^([A-Z][A-Z0-9_]*) = Reply\(", r"\1: Reply = Reply("),)
REGEX_PATCHED = "smtpkit/_replies.py"

#: (file, exact text, replacement): the source changes compilation needs.
PATCHES = (
    # A non-native class body holds only assignments and functions: the line that
    # copies a docstring onto an overriding method goes (the text is only documentation).
    (
        "smtpkit/_commands.py",
        "    handle_exception.__doc__ = Connection.handle_exception.__doc__\n",
        "",
    ),
    # mypyc refers to the module that defines a Python base class (asyncio.streams, for
    # StreamReaderProtocol) without declaring it unless the module imports it by name.
    ("smtpkit/_connection.py", "\nimport asyncio\n", "\nimport asyncio\nimport asyncio.streams\n"),
    # mypyc evaluates the annotations in a non-native class body when the module is
    # imported, so the names they use must exist at run time. _transfer imports nothing
    # of the protocol, so import it; _settings imports _commands (a cycle), so its
    # class is named in a comment instead (a Python class: no native access to lose).
    (
        "smtpkit/_connection.py",
        "from ._session import Envelope, Session\n",
        "from ._session import Envelope, Session\nfrom ._transfer import Transfer\n",
    ),
    ("smtpkit/_connection.py", "    _settings: Settings\n", "    _settings: Any  # Settings\n"),
    # A compiled method takes no attributes of its own, so @syntax keeps the HELP text of
    # the compiled commands in a table beside them, and HELP reads it from there.
    (
        "smtpkit/_syntax.py",
        "    def decorator(func: _F) -> _F:\n"
        "        func.__smtp_syntax__ = text  # type: ignore[attr-defined]\n"
        "        func.__smtp_syntax_extended__ = extended  # type: ignore[attr-defined]\n"
        "        func.__smtp_syntax_when__ = when  # type: ignore[attr-defined]\n"
        "        return func\n",
        "    def decorator(func: _F) -> _F:\n"
        "        try:\n"
        "            func.__smtp_syntax__ = text  # type: ignore[attr-defined]\n"
        "            func.__smtp_syntax_extended__ = extended  # type: ignore[attr-defined]\n"
        "            func.__smtp_syntax_when__ = when  # type: ignore[attr-defined]\n"
        "        except AttributeError:\n"
        "            _COMPILED[func] = {\n"
        "                '__smtp_syntax__': text,\n"
        "                '__smtp_syntax_extended__': extended,\n"
        "                '__smtp_syntax_when__': when,\n"
        "            }\n"
        "        return func\n",
    ),
    (
        "smtpkit/_syntax.py",
        "\n\ndef syntax(",
        "\n_COMPILED: dict[Any, dict[str, str | None]] = {}\n_NONE = object()\n\n\n"
        "def syntax_attr(method: Any, name: str, default: Any = _NONE) -> Any:\n"
        "    found = _COMPILED.get(getattr(method, '__func__', method))\n"
        "    if found is not None:\n"
        "        return found[name]\n"
        "    if default is _NONE:\n"
        "        return getattr(method, name)\n"
        "    return getattr(method, name, default)\n"
        "\n\ndef syntax(",
    ),
    (
        "smtpkit/_commands.py",
        "from ._syntax import syntax\n",
        "from ._syntax import syntax, syntax_attr\n",
    ),
    (
        "smtpkit/_commands.py",
        "text = method.__smtp_syntax__  # type: ignore[attr-defined]",
        'text = syntax_attr(method, "__smtp_syntax__")',
    ),
    (
        "smtpkit/_commands.py",
        "extended = method.__smtp_syntax_extended__  # type: ignore[attr-defined]",
        'extended = syntax_attr(method, "__smtp_syntax_extended__")',
    ),
    (
        "smtpkit/_commands.py",
        'if not hasattr(method, "__smtp_syntax__"):',
        'if syntax_attr(method, "__smtp_syntax__", _NO_SYNTAX) is _NO_SYNTAX:',
    ),
    (
        "smtpkit/_commands.py",
        'when = getattr(method, "__smtp_syntax_when__", None)',
        'when = syntax_attr(method, "__smtp_syntax_when__", None)',
    ),
    (
        "smtpkit/_commands.py",
        "\n\nclass TLSSetupException(",
        "\n\n_NO_SYNTAX = object()\n\n\nclass TLSSetupException(",
    ),
    # A compiled bytes slice with a negative start past the front raises SystemError
    # ("Negative size passed to PyBytes_FromStringAndSize") where Python gives b"". The
    # test only matters when cut >= 2 (below that, the slice is empty or the segment is
    # held back whatever it says), so guard it.
    (
        "smtpkit/_data.py",
        "        elif work[cut - 2 : cut] == _UNSTUFFED:\n",
        "        elif cut >= 2 and work[cut - 2 : cut] == _UNSTUFFED:\n",
    ),
    # mypy gives ``status`` the type of its first value (Reply | str | None), and the
    # compiled code checks it on every assignment: the handler's DATA reply (LMTP: a list
    # of replies) fails that check. The variable holds whatever the handler returns.
    (
        "smtpkit/_commands.py",
        "            status = await self._receive_data()\n",
        "            status: Any = await self._receive_data()\n",
    ),
    # Checked against Python 3.11's stubs (the interpreter the build is for),
    # loop.start_tls() wants a WriteTransport where the source has a BaseTransport.
    (
        "smtpkit/_commands.py",
        "            new = await self.loop.start_tls(\n                old,\n",
        "            new = await self.loop.start_tls(\n"
        "                old,  # type: ignore[arg-type,unused-ignore]\n",
    ),
)

#: (file, class, property): properties with a setter, which mypyc does not support in a
#: non-native class. The class body keeps an annotation; the getter and setter become
#: module-level functions and the property is set on the class after it is made.
SETTER_PROPERTIES = (
    ("smtpkit/_connection.py", "Connection", "_closing"),
    ("smtpkit/smtp.py", "SMTP", "_tls_protocol"),
)

#: Without allow_interpreted_subclasses, a compiled method checks that ``self`` is of
#: exactly its class, and every interpreted subclass (LMTP, an App's class) fails.
_DECORATOR = "@mypyc_attr(native_class=False, allow_interpreted_subclasses=True)"
_MYPYC_IMPORT = "from mypy_extensions import mypyc_attr\n"


def copy_tree(out: Path) -> Path:
    """Copy ``smtpkit/`` (without caches or built files) into ``out``; return the copy."""
    target = out / "smtpkit"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(
        REPO_DIR / "smtpkit",
        target,
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc", "*.c"),
    )
    return target


def _mark_non_native(text: str, classes: tuple[str, ...], where: str) -> str:
    for name in classes:
        pattern = re.compile(rf"^class {name}\b", re.MULTILINE)
        if not pattern.search(text):
            raise SystemExit(f"build.py: class {name} not found in {where}")
        text = pattern.sub(f"{_DECORATOR}\nclass {name}", text, count=1)
    # After the "from __future__" import, which must stay first.
    future = "from __future__ import annotations\n"
    if future not in text:
        raise SystemExit(f"build.py: no {future.strip()!r} in {where}")
    return text.replace(future, future + _MYPYC_IMPORT, 1)


def _move_property(text: str, cls: str, name: str, where: str) -> str:
    """Take property ``name`` (getter and setter) out of class ``cls``'s body."""
    block = re.compile(
        rf"    @property\n    def {name}\(self\) -> (?P<type>[^:]+):\n"
        rf"(?P<get>(?:        .*\n|\n)+?)"
        rf"    @{name}\.setter\n    def {name}\(self, value: (?P<vtype>[^)]+)\) -> None:\n"
        rf"(?P<set>(?:        .*\n|\n(?=        ))+)"
    )
    found = block.search(text)
    if found is None:
        raise SystemExit(f"build.py: property {cls}.{name} not found in {where}")
    kind, getter, setter = found["type"], found["get"], found["set"]
    text = text[: found.start()] + f"    {name}: {kind}\n\n" + text[found.end() :]
    functions = (
        f"\n\ndef _get{name}(self: {cls}) -> {kind}:\n{_dedent(getter)}"
        f"\n\ndef _set{name}(self: {cls}, value: {found['vtype']}) -> None:\n{_dedent(setter)}"
        f"\n\nsetattr({cls}, {name!r}, property(_get{name}, _set{name}))\n"
    )
    return text.rstrip("\n") + "\n" + functions


def _dedent(body: str) -> str:
    return "".join(
        line[4:] if line.startswith("        ") else line for line in body.splitlines(True)
    )


_DEFAULTS_BLOCK = """_DEFAULTS = {
    name: param.default
    for name, param in inspect.signature(SMTP.__init__).parameters.items()
    if param.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("loop", "config")
}
"""


def _spell_defaults(out: Path) -> None:
    """Write SMTP's keyword defaults into smtp.py as a literal.

    smtp.py reads them from ``inspect.signature(SMTP.__init__)``, which a compiled
    ``__init__`` does not have; they are taken from the source tree's module.
    """
    code = "import smtpkit.smtp as m; print(repr(m._DEFAULTS))"
    env = dict(os.environ, PYTHONPATH=str(REPO_DIR))
    found = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    if ast.literal_eval(found) is None:
        raise SystemExit("build.py: no defaults found in smtpkit.smtp")
    path = out / "smtpkit" / "smtp.py"
    text = path.read_text()
    if text.count(_DEFAULTS_BLOCK) != 1:
        raise SystemExit("build.py: the _DEFAULTS block of smtp.py changed")
    path.write_text(text.replace(_DEFAULTS_BLOCK, f"_DEFAULTS: dict[str, Any] = {found}\n"))


def patch(out: Path) -> None:
    """Apply :data:`PATCHES` and :data:`NON_NATIVE` to the copy in ``out``."""
    for name, old, new in PATCHES:
        path = out / name
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"build.py: patch for {name} does not apply (source changed?)")
        path.write_text(text.replace(old, new))
    path = out / REGEX_PATCHED
    text = path.read_text()
    for pattern, replacement in REGEX_PATCHES:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        if not count:
            raise SystemExit(f"build.py: {pattern!r} matches nothing in {REGEX_PATCHED}")
    path.write_text(text)
    _spell_defaults(out)
    for name, cls, prop in SETTER_PROPERTIES:
        path = out / name
        path.write_text(_move_property(path.read_text(), cls, prop, name))
    for name, classes in NON_NATIVE.items():
        path = out / name
        path.write_text(_mark_non_native(path.read_text(), classes, name))


#: The setup script mypyc runs in the build directory (what the ``mypyc`` command writes,
#: but with separate compilation). mypyc ignores ``allow_interpreted_subclasses`` on a
#: non-native class and, knowing every compiled subclass of it, checks that ``self`` (and
#: any argument of that class) is exactly one of those classes: every interpreted
#: subclass (LMTP, a user's class) would get a TypeError. Compiling each module on its
#: own (``separate=True``) turns off that whole-program knowledge, so the checks use
#: isinstance(); the price is that calls between compiled modules go through a table.
SETUP = """\
from mypyc.build import mypycify
from setuptools import setup

setup(
    name="smtpkit_mypyc",
    ext_modules=mypycify({args!r}, opt_level="3", debug_level="1", separate=True),
)
"""


def compile_modules(out: Path, modules: tuple[str, ...]) -> None:
    """Run mypyc on ``modules`` inside ``out`` (it type-checks and builds in place)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    args = ["--strict", "--python-version", version, *modules]
    build = out / "build"
    build.mkdir(exist_ok=True)
    (build / "setup.py").write_text(SETUP.format(args=args))
    print(f"build.py: mypyc on {len(modules)} modules in {out}", file=sys.stderr)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "build/setup.py", "build_ext", "--inplace"], cwd=out, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"build.py: mypyc failed with status {result.returncode}")
    print(f"build.py: compiled in {time.monotonic() - started:.0f} s", file=sys.stderr)


def check(out: Path, modules: tuple[str, ...]) -> None:
    """Import the built tree in a fresh interpreter and make sure the modules are compiled."""
    names = [module.removesuffix(".py").replace("/", ".") for module in modules]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    module = importlib.import_module(name)\n"
        "    assert module.__file__.endswith('.so'), (name, module.__file__)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(out))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=out, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"build.py: the built tree does not import:\n{result.stderr}")


def main(argv: list[str]) -> int:
    """Copy, patch, compile and check; print the directory to put on PYTHONPATH."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"build directory (default: {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--modules",
        default=",".join(MODULES),
        help="comma-separated source files to compile (default: the protocol core)",
    )
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if out == REPO_DIR or REPO_DIR / "smtpkit" in (out, *out.parents):
        raise SystemExit("build.py: --out must not be the source tree")
    modules = tuple(m.strip() for m in args.modules.split(",") if m.strip())
    out.mkdir(parents=True, exist_ok=True)
    # What an earlier build or test run left (bench/mypyc/test.sh copies the tests here).
    for stale in ("build", "tests", ".mypy_cache"):
        shutil.rmtree(out / stale, ignore_errors=True)
    (out / "pyproject.toml").unlink(missing_ok=True)
    for library in out.glob("*__mypyc*.so"):
        library.unlink()
    copy_tree(out)
    patch(out)
    compile_modules(out, modules)
    check(out, modules)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
