"""Every docs page runs as written: its python blocks and console commands, in order.

The conventions are described in ``tests/docs/pages.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .runner import PageRun

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted(path.name for path in DOCS.glob("*.md"))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("page", PAGES)
def test_page_runs_as_written(page: str, tmp_path: Path) -> None:
    folder, logs = tmp_path / "page", tmp_path / "logs"
    folder.mkdir()
    logs.mkdir()
    PageRun(page, folder, logs).run_source((DOCS / page).read_text())
