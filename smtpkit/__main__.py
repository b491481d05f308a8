"""``python -m smtpkit``: the same command as ``smtpkit`` (see :mod:`smtpkit.cli`)."""

from __future__ import annotations

from smtpkit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
