"""Replace the generated results section of docs/performance.md."""

from __future__ import annotations

from pathlib import Path

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


def replace_section(page: Path, body: str) -> None:
    """Put ``body`` between the page's begin and end markers, keeping everything else.

    Raises:
        ValueError: If the page lacks either marker, or has them in the wrong order.
    """
    text = page.read_text(encoding="utf-8")
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"{page}: expected the markers {BEGIN} ... {END}, in that order")
    new = text[: start + len(BEGIN)] + "\n\n" + body.strip() + "\n\n" + text[stop:]
    page.write_text(new, encoding="utf-8")
