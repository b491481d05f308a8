"""Find what ``smtpkit run TARGET`` serves: an App, or an SMTP handler object.

TARGET is ``module:name``, ``module:factory(literal, ...)`` or ``path/to/file.py:name``;
without ``:name`` the module is searched (see :func:`load_target`). One small function
per step, and every error says what was tried and shows the ``module:name`` form.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from .options import UsageError

__all__ = [
    "DEFAULT_NAMES",
    "FACTORY_NAMES",
    "Target",
    "TargetCallError",
    "TargetError",
    "TargetImportError",
    "TargetRaisedError",
    "is_handler",
    "load_target",
    "source_roots",
]

#: The names looked up when TARGET has no ``:name``, in order.
DEFAULT_NAMES = ("app", "application")
#: The factories called (without arguments) when no app is found by name or type.
FACTORY_NAMES = ("create_app", "make_app")

# ``module:name``: the last colon not followed by a path separator (``C:\...`` stays whole).
_SPLIT = re.compile(r":(?![\\/])")
_FORMS = "'module:name', 'module:create_app()' or 'path/to/file.py:name'"


class TargetError(UsageError):
    """TARGET names nothing that can be served; the message says what was tried."""


class TargetRaisedError(Exception):
    """The user's code raised while the target was loaded; ``__cause__`` holds its error."""


class TargetImportError(TargetRaisedError):
    """Importing the target's module raised; ``__cause__`` holds the module's own error."""


class TargetCallError(TargetRaisedError):
    """The target's factory raised when called; ``__cause__`` holds the factory's error."""


@dataclass(frozen=True)
class Target:
    """What TARGET resolved to.

    Attributes:
        text: TARGET as given.
        kind: ``"app"`` for an App, ``"handler"`` for a handler object.
        obj: the App or the handler.
    """

    text: str
    kind: Literal["app", "handler"]
    obj: Any

    def describe(self) -> str:
        """A short description for start-up and ``smtpkit routes``."""
        if self.kind == "app":
            return f"App {self.obj.name!r} ({self.text})"
        return f"handler {type(self.obj).__qualname__} ({self.text}), served with the SMTP class"


def load_target(text: str) -> Target:
    """Import and find the object TARGET names.

    Without ``:name``: the attributes ``app`` then ``application``; else the module's
    only App instance; else a factory ``create_app()`` or ``make_app()``, called with no
    arguments. With ``:name``: that attribute (dotted names allowed), or a call of it
    with literal arguments (``create_app("prod", workers=2)``, parsed with
    :func:`ast.literal_eval`, never executed as code).

    Args:
        text: TARGET as given on the command line.

    Returns:
        The target.

    Raises:
        TargetError: the module, file or name is missing, the expression is not a name
            or a call with literal arguments, or the object is neither an App nor a handler.
        TargetImportError: the module was found but raised while importing.
        TargetCallError: the factory (``create_app()`` and the like) raised.
    """
    module_part, name = split_target(text)
    module_name = _module_name(module_part)
    module = _import(module_name, module_part)
    if name is None:
        obj, label = _find_default(module, module_name)
    else:
        obj, label = _evaluate(module, module_name, name), f"{module_name}:{name}"
    return _classify(obj, label, text)


def split_target(text: str) -> tuple[str, str | None]:
    """Split TARGET into its module (or file) part and its name part (None when absent)."""
    parts = _SPLIT.split(text.strip(), maxsplit=1)
    if not parts[0]:
        raise TargetError(f"TARGET {text!r} has no module; expected {_FORMS}")
    if len(parts) == 1:
        return parts[0], None
    if not parts[1].strip():
        raise TargetError(f"TARGET {text!r} has nothing after ':'; expected {_FORMS}")
    return parts[0], parts[1].strip()


def _is_path(module_part: str) -> bool:
    return module_part.endswith(".py") or "/" in module_part or os.sep in module_part


def _module_name(module_part: str) -> str:
    """The module to import; for a file, its dotted name, its root put on sys.path."""
    if not _is_path(module_part):
        _cwd_on_path()
        return module_part
    path = Path(module_part)
    if not path.exists():
        raise TargetError(f"no file {module_part!r} (looked in {os.getcwd()!r}); expected {_FORMS}")
    root, dotted = _package_root(path.resolve())
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return dotted


def _package_root(path: Path) -> tuple[Path, str]:
    """Walk up through packages (folders with ``__init__.py``): (the root, the dotted name)."""
    if path.suffix == ".py":
        path = path.with_suffix("")
    if path.name == "__init__":
        path = path.parent
    names = [path.name]
    while (path.parent / "__init__.py").exists():
        path = path.parent
        names.append(path.name)
    return path.parent, ".".join(reversed(names))


def _cwd_on_path() -> None:
    # ``python -m`` puts the working directory first on sys.path; the console script
    # does not. A module next to the user should be found either way.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _import(module_name: str, module_part: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if _names_the_target(exc, module_name):
            raise TargetError(
                f"could not import {module_part!r}: no module named {exc.name!r} "
                f"(searched sys.path, which starts with {sys.path[0]!r}); expected {_FORMS}"
            ) from None
        raise TargetImportError(f"importing {module_name!r} failed") from exc
    except Exception as exc:
        raise TargetImportError(f"importing {module_name!r} failed") from exc


def _names_the_target(exc: ModuleNotFoundError, module_name: str) -> bool:
    """Whether the missing module is the target (or a package on its way), not a dependency."""
    missing = exc.name or ""
    return module_name == missing or module_name.startswith(missing + ".")


# -- without :name ---------------------------------------------------------------------


def _find_default(module: ModuleType, module_name: str) -> tuple[Any, str]:
    for name in DEFAULT_NAMES:
        if hasattr(module, name):
            return getattr(module, name), f"{module_name}:{name}"
    app = _single_app(module, module_name)
    if app is not None:
        return app
    for name in FACTORY_NAMES:
        factory = getattr(module, name, None)
        if inspect.isfunction(factory):
            _check_call(factory, name, (), {}, module_name)
            label = f"{module_name}:{name}()"
            return _called(factory, (), {}, label), label
    raise TargetError(
        f"could not find an app in module {module_name!r}: tried the names "
        f"{' and '.join(map(repr, DEFAULT_NAMES))}, a single App instance, and the factories "
        f"{' and '.join(f'{n}()' for n in FACTORY_NAMES)}; name one with "
        f"'{module_name}:NAME' or '{module_name}:create_app()'"
    )


def _single_app(module: ModuleType, module_name: str) -> tuple[Any, str] | None:
    from ..routing import App

    found = {name: value for name, value in vars(module).items() if isinstance(value, App)}
    if len(found) > 1:
        names = ", ".join(sorted(found))
        raise TargetError(
            f"module {module_name!r} has several App instances ({names}); name one, "
            f"such as '{module_name}:{sorted(found)[0]}'"
        )
    if found:
        name, app = found.popitem()
        return app, f"{module_name}:{name}"
    return None


# -- with :name --------------------------------------------------------------------------


def _evaluate(module: ModuleType, module_name: str, text: str) -> Any:
    """Resolve ``name``, ``a.b`` or ``factory(literal, key=literal)`` in ``module``."""
    try:
        expression = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise TargetError(_not_an_expression(text, module_name, "it does not parse")) from None
    if isinstance(expression, ast.Call):
        return _call(module, module_name, text, expression)
    return _attribute(module, module_name, text, expression)


def _attribute(module: ModuleType, module_name: str, text: str, node: ast.expr) -> Any:
    names = _dotted(node)
    if names is None:
        raise TargetError(_not_an_expression(text, module_name, "it is not a name"))
    obj: Any = module
    where = f"module {module_name!r}"
    for name in names:
        if not hasattr(obj, name):
            # The suggestion ends the message, as in the configuration errors.
            hint = _did_you_mean(name, dir(obj))
            raise TargetError(
                f"{where} has no attribute {name!r}; expected {_FORMS} "
                f"(such as '{module_name}:app'){hint}"
            )
        obj = getattr(obj, name)
        where = f"'{module_name}:{'.'.join(names[: names.index(name) + 1])}'"
    return obj


def _dotted(node: ast.expr) -> list[str] | None:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else [*head, node.attr]
    return None


def _call(module: ModuleType, module_name: str, text: str, node: ast.Call) -> Any:
    func = _attribute(module, module_name, text, node.func)
    try:
        args = tuple(ast.literal_eval(arg) for arg in node.args)
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}
    except ValueError:
        reason = "its arguments must be literals (strings, numbers, lists, dicts, ...)"
        raise TargetError(_not_an_expression(text, module_name, reason)) from None
    if len(kwargs) != len(node.keywords):
        raise TargetError(_not_an_expression(text, module_name, "it unpacks **arguments"))
    if not callable(func):
        raise TargetError(f"'{module_name}:{ast.unparse(node.func)}' is not callable: {func!r}")
    _check_call(func, ast.unparse(node.func), args, kwargs, module_name)
    return _called(func, args, kwargs, f"{module_name}:{text}")


def _called(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], label: str) -> Any:
    """Call the user's factory; what it raises is the user's error, with its traceback."""
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        raise TargetCallError(f"calling {label!r} failed") from exc


def _check_call(
    func: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], module_name: str
) -> None:
    """Refuse a call whose arguments do not fit, before running any of its code."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        given = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        raise TargetError(
            f"cannot call {name}({given}) from module {module_name!r}: {exc}; its signature "
            f"is {name}{signature}; give literal arguments: '{module_name}:{name}(...)'"
        ) from None


def _not_an_expression(text: str, module_name: str, reason: str) -> str:
    return (
        f"{text!r} after ':' is not a name or a call with literal arguments ({reason}); "
        f"expected '{module_name}:name' or '{module_name}:create_app(\"literal\", 1)'"
    )


def _did_you_mean(name: str, candidates: list[str]) -> str:
    public = [c for c in candidates if not c.startswith("__")]
    close = difflib.get_close_matches(name, public, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# -- what was found ----------------------------------------------------------------------


def is_handler(obj: Any) -> bool:
    """Whether ``obj`` is a handler instance.

    That is an instance (not a class, module or function) with ``handle_*`` methods, or
    of a class with the documented ``from_cli`` constructor of handlers (such as
    :class:`~smtpkit.handlers.Sink`, which needs no hook at all).
    """
    if isinstance(obj, (type, ModuleType)) or inspect.isroutine(obj):
        return False
    if callable(getattr(type(obj), "from_cli", None)):
        return True
    return any(
        name.startswith("handle_") and callable(getattr(obj, name, None)) for name in dir(obj)
    )


def _classify(obj: Any, label: str, text: str) -> Target:
    from ..routing import App

    if isinstance(obj, App):
        return Target(text, "app", obj)
    if is_handler(obj):
        return Target(text, "handler", obj)
    if isinstance(obj, type) and (hasattr(obj, "from_cli") or _has_hooks(obj)):
        raise TargetError(f"'{label}' is a class; name an instance, or call it: '{label}()'")
    raise TargetError(
        f"'{label}' is {_a(obj)}, not an App or an SMTP handler object (an object "
        f"with handle_* methods); expected {_FORMS}"
    )


def _has_hooks(cls: type) -> bool:
    return any(name.startswith("handle_") for name in dir(cls))


def _a(obj: Any) -> str:
    kind = type(obj).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind} ({obj!r:.60})"


# -- for --reload: where the target's sources are, without importing it -------------------


def source_roots(text: str) -> list[Path]:
    """The folders (or the lone file) whose ``.py`` files ``--reload`` watches.

    A file target: its package root. A module target: its top-level package's folder,
    found with :func:`importlib.util.find_spec` (which runs no code of the target); a
    single-module target: its folder, unless that is an installed-packages or standard
    library folder, where only the file itself is watched.

    Args:
        text: TARGET as given.

    Returns:
        The paths to watch; empty when the target cannot be found (the child process
        reports why).
    """
    module_part, _ = split_target(text)
    if _is_path(module_part):
        path = Path(module_part).resolve()
        return [_package_root(path)[0]] if path.exists() else []
    _cwd_on_path()
    try:
        spec = importlib.util.find_spec(module_part.partition(".")[0])
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [Path(location) for location in spec.submodule_search_locations]
    if spec.origin is None or not spec.has_location:
        return []
    origin = Path(spec.origin)
    return [origin] if _is_library(origin.parent) else [origin.parent]


def _is_library(folder: Path) -> bool:
    if {"site-packages", "dist-packages"} & set(folder.parts):
        return True
    prefixes = {Path(sys.base_prefix), Path(sys.prefix)}
    return any(
        folder == prefix / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
        for prefix in prefixes
    )
