"""``python -m smtpkit.auth``: manage a password file (see :mod:`smtpkit.auth.passwd`)."""

from __future__ import annotations

from smtpkit.auth.passwd import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m smtpkit.auth"))
