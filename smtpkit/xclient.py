"""The records of XCLIENT and XFORWARD, on ``session.xclient`` and ``session.xforward``.

See ``docs/esmtp.md`` for when a server accepts those commands.
"""

from __future__ import annotations

from ._xclient import (
    XCLIENT_ATTRIBUTES,
    XFORWARD_ATTRIBUTES,
    Special,
    XClientAttributes,
    XClientError,
    XForwardAttributes,
    parse_xclient,
    parse_xforward,
)

__all__ = [
    "XCLIENT_ATTRIBUTES",
    "XFORWARD_ATTRIBUTES",
    "Special",
    "XClientAttributes",
    "XClientError",
    "XForwardAttributes",
    "parse_xclient",
    "parse_xforward",
]
