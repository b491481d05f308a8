"""Replace the generated results sections of docs/performance.md.

The page has two generated blocks: the published run (a full run), and below it the latest
quick run, which ``--quick --write-docs`` fills in. A full run of every section with
``--write-docs`` replaces the first and empties the second, so that the page never shows a
quick run older than a complete full one.
"""

from __future__ import annotations

from pathlib import Path

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
QUICK_BEGIN = "<!-- bench:quick:begin -->"
QUICK_END = "<!-- bench:quick:end -->"


def replace_section(page: Path, body: str, begin: str = BEGIN, end: str = END) -> None:
    """Put ``body`` between the page's ``begin`` and ``end`` markers, keeping everything else.

    Raises:
        ValueError: If the page lacks either marker, or has them in the wrong order.
    """
    text = page.read_text(encoding="utf-8")
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"{page}: expected the markers {begin} ... {end}, in that order")
    inner = "\n\n" + body.strip() + "\n\n" if body.strip() else "\n"
    new = text[: start + len(begin)] + inner + text[stop:]
    page.write_text(new, encoding="utf-8")


def publish(page: Path, body: str, *, quick: bool, complete: bool) -> None:
    """Write a run's report into its block: the quick block, or the main one.

    Args:
        page: The page.
        body: The report.
        quick: Whether the run was a quick one.
        complete: Whether it ran every section; a complete full run also empties the
            quick block, when the page has one.

    Raises:
        ValueError: If the page lacks the markers of the block to write.
    """
    if quick:
        replace_section(page, body, QUICK_BEGIN, QUICK_END)
        return
    replace_section(page, body)
    if complete and QUICK_BEGIN in page.read_text(encoding="utf-8"):
        replace_section(page, "", QUICK_BEGIN, QUICK_END)
