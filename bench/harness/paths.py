"""Where things are: the repository, the interpreters, and Postfix's test tools."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
SERVERS_DIR = BENCH_DIR / "servers"
CLIENTS_DIR = BENCH_DIR / "clients"
RESULTS_DIR = BENCH_DIR / "results"
PEERS_VENV = BENCH_DIR / ".venv-peers"
SETUP_SCRIPT = BENCH_DIR / "setup.sh"
DOCS_PAGE = REPO_DIR / "docs" / "performance.md"

#: Where Debian and other systems put Postfix's smtp-source and smtp-sink.
_POSTFIX_DIRS = ("/usr/sbin", "/usr/lib/postfix", "/usr/lib/postfix/sbin", "/usr/libexec/postfix")


def project_python() -> str:
    """Return the interpreter of the project's virtualenv, or this one if there is none."""
    candidate = REPO_DIR / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def peers_python() -> str:
    """Return the interpreter of the peers' virtualenv (it may not exist yet)."""
    return str(PEERS_VENV / "bin" / "python")


def postfix_tool(name: str) -> str | None:
    """Return the path of Postfix's ``name`` (smtp-source, smtp-sink), or None if missing."""
    found = shutil.which(name)
    if found:
        return found
    for folder in _POSTFIX_DIRS:
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None
