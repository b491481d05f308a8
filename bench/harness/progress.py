"""Progress lines on stderr, so that stdout carries only the final tables."""

from __future__ import annotations

import sys
import time

_START = time.monotonic()


def say(section: str, message: str) -> None:
    """Print ``[  12s] section: message`` on stderr."""
    elapsed = time.monotonic() - _START
    print(f"[{elapsed:5.0f}s] {section}: {message}", file=sys.stderr, flush=True)
