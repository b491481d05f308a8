"""Manage a password file for :class:`~smtpkit.auth.PasswordFileAuthenticator`.

Usage::

    python -m smtpkit.auth add-user FILE USER [--password-stdin]
    python -m smtpkit.auth remove-user FILE USER
    python -m smtpkit.auth list FILE

Exit status: 0 on success, 1 when the command failed (the reason is printed
on stderr), 2 for a usage error, 130 when interrupted.

Files are rewritten atomically (a temporary file in the same directory, then
:func:`os.replace`). A new file gets mode 0600; an existing file keeps its
mode and, where permitted, its owner.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import stat
import sys
import tempfile
from collections.abc import Callable

from smtpkit.auth.authenticators import check_user_name, hash_password, parse_password_lines

__all__ = ["CommandError", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A failure to report on stderr with exit status 1."""


def main(argv: list[str] | None = None, *, prog: str = "smtpkit passwd") -> int:
    """Run the command.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).
        prog: the program name shown in help and error messages.

    Returns:
        The exit status.
    """
    parser = _build_parser(prog)
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], str] = args.run
    try:
        message = run(args)
    except CommandError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    if message:
        print(message)
    return EXIT_OK


def _build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Manage an smtpkit password file (scrypt hashes)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add = commands.add_parser("add-user", help="add a user, or replace their password")
    add.add_argument("file", metavar="FILE")
    add.add_argument("user", metavar="USER")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    add.add_argument("--scrypt-n", type=int, default=2**14, metavar="N", help="default: 16384")
    add.add_argument("--scrypt-r", type=int, default=8, metavar="R", help="default: 8")
    add.add_argument("--scrypt-p", type=int, default=1, metavar="P", help="default: 1")
    add.set_defaults(run=_add_user)

    remove = commands.add_parser("remove-user", help="remove a user")
    remove.add_argument("file", metavar="FILE")
    remove.add_argument("user", metavar="USER")
    remove.set_defaults(run=_remove_user)

    listing = commands.add_parser("list", help="print the user names, one per line")
    listing.add_argument("file", metavar="FILE")
    listing.set_defaults(run=_list_users)
    return parser


# --- commands ----------------------------------------------------------------


def _add_user(args: argparse.Namespace) -> str:
    user: str = args.user
    path: str = args.file
    _check_user(user)
    lines = _read_lines(path, missing_ok=True)
    password = _read_stdin_password() if args.password_stdin else _prompt_password()
    try:
        encoded = hash_password(password, n=args.scrypt_n, r=args.scrypt_r, p=args.scrypt_p)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    entry = f"{user}:{encoded}"
    index = _find_user(lines, user)
    if index is None:
        _write_atomically(path, [*lines, entry])
        return f"added user {user!r} to {path}"
    lines[index] = entry
    _write_atomically(path, lines)
    return f"replaced the password of user {user!r} in {path}"


def _remove_user(args: argparse.Namespace) -> str:
    user: str = args.user
    path: str = args.file
    lines = _read_lines(path, missing_ok=False)
    index = _find_user(lines, user)
    if index is None:
        raise CommandError(f"user {user!r} not found in {path}")
    del lines[index]
    _write_atomically(path, lines)
    return f"removed user {user!r} from {path}"


def _list_users(args: argparse.Namespace) -> str:
    path: str = args.file
    users = parse_password_lines(_read_lines(path, missing_ok=False), path)
    return "\n".join(users)


# --- helpers -----------------------------------------------------------------


def _check_user(user: str) -> None:
    try:
        check_user_name(user)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _read_lines(path: str, *, missing_ok: bool) -> list[str]:
    """Read and validate the file; a missing file is empty if ``missing_ok``."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        if missing_ok:
            return []
        raise CommandError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path}: cannot read: {exc}") from None
    try:
        parse_password_lines(lines, path)
    except ValueError as exc:
        raise CommandError(f"{exc} (fix the file by hand first)") from None
    return lines


def _find_user(lines: list[str], user: str) -> int | None:
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if stripped.partition(":")[0] == user and ":" in stripped:
            return index
    return None


def _read_stdin_password() -> str:
    line = sys.stdin.readline()
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise CommandError("no password on standard input")
    return password


def _prompt_password() -> str:
    if not sys.stdin.isatty():
        raise CommandError("standard input is not a terminal; use --password-stdin")
    try:
        first = getpass.getpass("Password: ")
        second = getpass.getpass("Repeat password: ")
    except EOFError:
        raise CommandError("no password entered") from None
    if first != second:
        raise CommandError("the passwords do not match")
    if not first:
        raise CommandError("empty passwords are not allowed")
    return first


def _write_atomically(path: str, lines: list[str]) -> None:
    """Replace ``path`` with ``lines`` in one step; see the module docstring."""
    target = os.path.realpath(path)
    try:
        previous: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        previous = None
    directory, name = os.path.split(target)
    try:
        fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    except OSError as exc:
        raise CommandError(f"{path}: cannot write: {exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.writelines(line + "\n" for line in lines)
            file.flush()
            os.fsync(file.fileno())
        _copy_metadata(temp, previous)
        os.replace(temp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise CommandError(f"{path}: cannot write: {exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _copy_metadata(temp: str, previous: os.stat_result | None) -> None:
    if previous is None:
        os.chmod(temp, 0o600)
        return
    os.chmod(temp, stat.S_IMODE(previous.st_mode))
    # Only root can give a file away; for everyone else the owner is already
    # right (or cannot be made right), so a refusal is not an error.
    with contextlib.suppress(PermissionError):
        os.chown(temp, previous.st_uid, previous.st_gid)
