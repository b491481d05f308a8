"""Exim (Debian's exim4-daemon-light) as a real SMTP client, run from an unpacked .deb.

Exim's package conflicts with Postfix's, so it is not installed:
``scripts/fetch-exim.sh`` downloads it and unpacks it (``dpkg -x``) into
``$SMTPKIT_EXIM_DIR`` (default ``~/.cache/smtpkit-peers/exim``), with
libidn12, which the binary links, and nss_wrapper. The binary is started
with ``-C`` and a configuration of its own: spool and log in a temporary
folder, one ``manualroute`` router sending everything to 127.0.0.1 on a given
port, ``hosts_try_chunking = *`` (BDAT when the server offers CHUNKING), no
daemon, and delivery in the foreground (``-odf``).

Two things make it run without installing it:

* The Debian build looks up its user ``Debian-exim`` before it reads any
  configuration, and fails when the system has no such user. nss_wrapper
  (``LD_PRELOAD``, ``NSS_WRAPPER_PASSWD``) gives it a passwd file of the
  test's own where ``Debian-exim`` is the ``nobody`` user's id.
* Exim re-executes itself for the delivery (``exim_path``); the environment
  that finds the libraries survives through ``keep_environment``.

Exim refuses to deliver as root (a fixed ``never_users``), hence a real
unprivileged id for its user, which must be able to run the binary again: each
setup copies the binary and its two libraries into its own 0755 folder. The
tests run it as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

HOST = "127.0.0.1"
DEFAULT_TREE = Path.home() / ".cache" / "smtpkit-peers" / "exim"
#: Seconds one ``exim -odf`` delivery may take.
SEND_LIMIT = 30.0
_ENVIRONMENT = ("LD_PRELOAD", "LD_LIBRARY_PATH", "NSS_WRAPPER_PASSWD", "NSS_WRAPPER_GROUP")


def tree() -> Path:
    """Where Exim's packages are unpacked (``$SMTPKIT_EXIM_DIR`` or the default)."""
    return Path(os.environ.get("SMTPKIT_EXIM_DIR") or DEFAULT_TREE)


def _library_dir(root: Path) -> Path | None:
    found = sorted(root.glob("usr/lib/*/libnss_wrapper.so"))
    return found[0].parent if found else None


def unavailable() -> str | None:
    """Why Exim cannot run here, or ``None`` when it can."""
    root = tree()
    if not (root / "usr/sbin/exim4").is_file() or _library_dir(root) is None:
        return f"Exim is not unpacked in {root} (run scripts/fetch-exim.sh)"
    if os.geteuid() != 0:
        return "Exim is run as root here: its spool belongs to the unprivileged Debian-exim user"
    return None


def _config(root: Path, binary: Path, port: int, chunking: bool) -> str:
    return f"""
primary_hostname = exim.test
qualify_domain = exim.test
spool_directory = {root}/spool
log_file_path = {root}/log/%slog
exim_path = {binary}
exim_user = Debian-exim
exim_group = Debian-exim
trusted_users = root
keep_environment = {" : ".join(_ENVIRONMENT)}
host_lookup =
rfc1413_hosts =

begin routers
to_server:
  driver = manualroute
  route_list = * {HOST}
  transport = to_server
  self = send
  no_more

begin transports
to_server:
  driver = smtp
  port = {port}
  allow_localhost
  hosts_avoid_tls = *
  hosts_try_chunking = {"*" if chunking else ""}

begin retry
* * F,1h,1h
"""


class Exim:
    """One Exim client setup that delivers everything to ``127.0.0.1:port``.

    Args:
        port: the server's port on 127.0.0.1.
        chunking: ``hosts_try_chunking = *`` (else empty: never BDAT).
    """

    LOG_TITLE = "Exim log"

    def __init__(self, port: int, *, chunking: bool = True) -> None:
        reason = unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        # Exim's user (nobody) must reach the spool, and the binary and libraries it
        # re-executes: all in a 0755 folder of their own (the unpacked tree may be in a
        # home directory nobody cannot enter).
        self.root = Path(tempfile.mkdtemp(prefix="smtpkit-exim-"))
        self.root.chmod(0o755)
        self.binary = self.root / "exim4"
        self.libraries = self.root / "lib"
        self._copy_programs(tree())
        self._write_files(port, chunking)

    def _copy_programs(self, source: Path) -> None:
        libraries = _library_dir(source)
        assert libraries is not None
        shutil.copy2(source / "usr/sbin/exim4", self.binary)
        self.libraries.mkdir(mode=0o755)
        for path in (*libraries.glob("libidn.so*"), libraries / "libnss_wrapper.so"):
            shutil.copy2(path, self.libraries / path.name, follow_symlinks=True)

    def _write_files(self, port: int, chunking: bool) -> None:
        nobody = pwd.getpwnam("nobody")
        for name in ("spool", "log"):
            (self.root / name).mkdir()
            os.chown(self.root / name, nobody.pw_uid, nobody.pw_gid)
        passwd = Path("/etc/passwd").read_text()
        entry = f"Debian-exim:x:{nobody.pw_uid}:{nobody.pw_gid}::/nonexistent:/usr/sbin/nologin\n"
        (self.root / "passwd").write_text(passwd + entry)
        group = Path("/etc/group").read_text()
        (self.root / "group").write_text(group + f"Debian-exim:x:{nobody.pw_gid}:\n")
        (self.root / "exim.conf").write_text(_config(self.root, self.binary, port, chunking))

    def _environment(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LD_PRELOAD": str(self.libraries / "libnss_wrapper.so"),
            "LD_LIBRARY_PATH": str(self.libraries),
            "NSS_WRAPPER_PASSWD": str(self.root / "passwd"),
            "NSS_WRAPPER_GROUP": str(self.root / "group"),
        }

    def send(self, sender: str, recipient: str, message: bytes) -> None:
        """Submit ``message`` and deliver it in the foreground (``-odf``).

        Raises:
            RuntimeError: exim exited non-zero or the message was not
                delivered (the error holds its output and log).
        """
        command = [str(self.binary), "-C", str(self.root / "exim.conf"), "-odf", "-oi"]
        command += ["-f", sender, recipient]
        done = subprocess.run(
            command,
            input=message,
            env=self._environment(),
            capture_output=True,
            timeout=SEND_LIMIT,
        )
        # "exim -odf" exits 0 even when the delivery is deferred: the log tells.
        if done.returncode != 0 or " Completed" not in self.log():
            raise RuntimeError(
                f"{command} exited with {done.returncode}: {done.stderr!r}\n{self.log()}"
            )

    def log(self) -> str:
        """Exim's main and panic logs so far."""
        parts = []
        for path in sorted((self.root / "log").glob("*log")):
            parts.append(f"{path.name}:\n{path.read_text(errors='replace')}")
        return "".join(parts)

    def cleanup(self) -> None:
        """Remove the temporary folder."""
        shutil.rmtree(self.root, ignore_errors=True)
