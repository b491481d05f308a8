"""The Python session of one docs page: runs blocks sent on stdin in shared globals.

Started by ``runner.py`` in the page's folder. Each request is one JSON line
``{"kind": "python" | "doctest", "source": ..., "name": ..., "line": N}``; each
answer is one JSON line ``{"ok": bool, "stdout": ..., "error": ...}`` on the
file descriptor that was stdout at start. What the session prints outside a
block (a server thread logging later) goes to stderr.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import json
import os
import sys
import traceback
from typing import Any


def run_python(globs: dict[str, Any], source: str, name: str, line: int) -> dict[str, Any]:
    """Execute one block; return what it printed and the traceback if it raised."""
    captured = io.StringIO()
    try:
        code = compile("\n" * (line - 1) + source, name, "exec")
        with contextlib.redirect_stdout(captured):
            exec(code, globs)
    except BaseException:  # a docs block may raise anything; report it all
        return {"ok": False, "stdout": captured.getvalue(), "error": traceback.format_exc()}
    return {"ok": True, "stdout": captured.getvalue(), "error": ""}


def run_doctest(globs: dict[str, Any], source: str, name: str, line: int) -> dict[str, Any]:
    """Check one ``>>>`` block; its definitions stay in ``globs``."""
    parser = doctest.DocTestParser()
    test = parser.get_doctest(source, globs, name, name, line - 1)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    failed, _ = runner.run(test, out=report.write, clear_globs=False)
    globs.update(test.globs)
    return {"ok": failed == 0, "stdout": "", "error": report.getvalue()}


def main() -> None:
    """Serve requests until stdin closes."""
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.path.insert(0, os.getcwd())
    globs: dict[str, Any] = {"__name__": "__main__"}
    for request_line in sys.stdin:
        request = json.loads(request_line)
        run = run_doctest if request["kind"] == "doctest" else run_python
        answer = run(globs, request["source"], request["name"], request["line"])
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
