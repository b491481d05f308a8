"""Every install command in README.md and docs/ installs this project, never a namesake.

The package index holds an unrelated ``smtpkit``; this project is published as
``smtpkit-server`` (its import name and its command stay ``smtpkit``). An install
command installs this project: a checkout (``.``, ``-e .``, a path, ``'.[extra]'``) or
``smtpkit-server``, with or without extras. A command may add other packages
(``smtpkit-server trustme``), or install only other packages (``pip install trustme``
for a test helper), but no command ever names the bare ``smtpkit``.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PUBLISHED = "smtpkit-server"
# ``pip install``, ``pip3 install``, ``python -m pip install``, ``uv pip install``; the
# command runs to the end of the line, a shell separator, a comment or a closing backtick.
INSTALL = re.compile(r"\bpip3? install\b([^\n`;|&#)]*)")
# Options whose value is the next word.
EDITABLE = {"-e", "--editable"}
VALUE_OPTIONS = {"-t", "--target", "-c", "--constraint", "-i", "--index-url"}
EXTRAS = r"(\[[A-Za-z0-9_,.-]+\])?"
CHECKOUT = re.compile(rf"(\.|\.{{1,2}}/\S*|/\S*|~/\S*){EXTRAS}")
VERSION = r"([<>=!~]=?\S*)?"
PROJECT = re.compile(rf"{re.escape(PUBLISHED)}{EXTRAS}{VERSION}", re.IGNORECASE)
NAMESAKE = re.compile(rf"smtpkit{EXTRAS}{VERSION}", re.IGNORECASE)


def install_commands() -> list[tuple[str, str]]:
    """``(page name, the arguments after 'pip install')`` for every install command."""
    found = []
    for page in PAGES:
        for match in INSTALL.finditer(page.read_text()):
            found.append((page.name, match.group(1).strip()))
    return found


def requirements(arguments: str) -> list[str]:
    """The requirement words of a ``pip install`` command, options and their values left out.

    The value of ``-e``/``--editable`` is a requirement (what gets installed); the values
    of ``--target``, ``--constraint`` and ``--index-url`` are not.
    """
    named = []
    words = iter(shlex.split(arguments))
    for word in words:
        if word in EDITABLE:
            named.append(next(words, ""))
        elif word in VALUE_OPTIONS:
            next(words, None)
        elif not word.startswith("-"):
            named.append(word)
    return named


def installs_this_project(requirement: str) -> bool:
    return bool(CHECKOUT.fullmatch(requirement) or PROJECT.fullmatch(requirement))


def is_the_namesake(requirement: str) -> bool:
    return bool(NAMESAKE.fullmatch(requirement))


def test_the_distribution_is_named_for_the_index() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == PUBLISHED
    assert project["scripts"]["smtpkit"] == "smtpkit.cli:main"


def test_the_install_pages_install_this_project() -> None:
    pages = {
        page
        for page, arguments in install_commands()
        if any(installs_this_project(word) for word in requirements(arguments))
    }
    assert {"README.md", "index.md", "deployment.md"} <= pages


@pytest.mark.parametrize(
    ("page", "arguments"), install_commands(), ids=[f"{p}: {a}" for p, a in install_commands()]
)
def test_no_install_command_installs_the_namesake(page: str, arguments: str) -> None:
    named = requirements(arguments)
    assert named, f"{page}: 'pip install {arguments}' names nothing to install"
    wrong = [word for word in named if is_the_namesake(word)]
    assert wrong == [], (
        f"{page}: 'pip install {arguments}' installs {wrong}, the index's unrelated "
        f"'smtpkit'; expected a checkout ('.', '.[uvloop]', a path) or {PUBLISHED!r}"
    )
    # Anything else named like this project must be this project (no 'smtpkit-sever').
    odd = [w for w in named if "smtpkit" in w.lower() and not installs_this_project(w)]
    assert odd == [], f"{page}: 'pip install {arguments}' installs {odd}"


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        (".", True),
        (".[uvloop]", True),
        ("./smtpkit[test]", True),
        ("/srv/src/smtpkit", True),
        ("smtpkit-server", True),
        ("smtpkit-server[uvloop]", True),
        ("smtpkit-server==0.1.0", True),
        ("smtpkit", False),
        ("smtpkit[uvloop]", False),
        ("SMTPKit==0.1.1", False),
        ("aiosmtpd", False),
    ],
)
def test_the_check_itself(requirement: str, expected: bool) -> None:
    assert installs_this_project(requirement) is expected
    assert is_the_namesake(requirement) is (
        requirement.lower().startswith("smtpkit") and not expected
    )


def test_options_and_editable_targets_are_told_apart() -> None:
    assert requirements("-q -e '.[test]'") == [".[test]"]
    assert requirements("--upgrade 'smtpkit-server[uvloop]'") == ["smtpkit-server[uvloop]"]
    assert requirements("-U smtpkit") == ["smtpkit"]
