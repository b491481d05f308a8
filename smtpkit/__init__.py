"""smtpkit: a fast, safe SMTP server framework for asyncio."""

from ._version import __version__

__all__ = ["__version__"]
