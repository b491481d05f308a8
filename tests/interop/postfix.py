"""A throw-away Postfix instance on 127.0.0.1, for tests against a real MTA.

Everything lives in one temporary folder: the configuration (``main.cf`` and
``master.cf``), the queue, the data directory and the log (``maillog_file``,
Postfix >= 3.4). The system's ``/etc/postfix`` is neither read nor changed:
``master -c DIR -d`` runs the instance in the foreground as a child of the
test, and ``sendmail -C DIR`` injects into it. The only listener is one
``smtpd`` on 127.0.0.1, on a free port.

Two roles, chosen by the settings:

``receiving(...)``
    ``smtpd`` as a reference receiver: mail for any domain is accepted from
    127.0.0.1 and thrown away (the ``discard`` transport). CHUNKING is on
    (Postfix's default); ``message_size_limit`` is a parameter.
``relaying(port, ...)``
    Postfix's ``smtp`` client relays everything to ``[127.0.0.1]:port``, a
    smtpkit server (or a recorder), optionally with
    ``smtp_send_xforward_command = yes``. DSN requests given to ``sendmail``
    (``-N``, ``-V``) go on to a server that offers DSN.

Postfix's master must run as root, and its daemons as the ``postfix`` user.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

HOST = "127.0.0.1"
SENDMAIL = Path("/usr/sbin/sendmail")


def _daemon_directory() -> Path:
    """Where Postfix's daemons are (``postconf -d -h daemon_directory``), or Debian's place."""
    postconf = shutil.which("postconf") or "/usr/sbin/postconf"
    try:
        done = subprocess.run(
            [postconf, "-d", "-h", "daemon_directory"], capture_output=True, text=True, timeout=10
        )
    except OSError:
        return Path("/usr/lib/postfix/sbin")
    return Path(done.stdout.strip() or "/usr/lib/postfix/sbin")


MASTER = _daemon_directory() / "master"
#: Seconds the instance may take to listen, and to stop.
START_LIMIT = 20.0
STOP_LIMIT = 10.0

# The internal services a small instance needs, after the one smtpd listener:
# (name, type, private, unprivileged, chroot, wakeup, max processes, command).
_SERVICES = """\
pickup    unix  n  -  n  60     1  pickup
cleanup   unix  n  -  n  -      0  cleanup
qmgr      unix  n  -  n  300    1  qmgr
rewrite   unix  -  -  n  -      -  trivial-rewrite
bounce    unix  -  -  n  -      0  bounce
defer     unix  -  -  n  -      0  bounce
trace     unix  -  -  n  -      0  bounce
verify    unix  -  -  n  -      1  verify
flush     unix  n  -  n  1000?  0  flush
proxymap  unix  -  -  n  -      -  proxymap
smtp      unix  -  -  n  -      -  smtp
relay     unix  -  -  n  -      -  smtp
showq     unix  n  -  n  -      -  showq
error     unix  -  -  n  -      -  error
retry     unix  -  -  n  -      -  error
discard   unix  -  -  n  -      -  discard
anvil     unix  -  -  n  -      1  anvil
scache    unix  -  -  n  -      1  scache
postlog   unix-dgram n - n - 1  postlogd
"""

# Queue subdirectories: name -> (group, mode); all are owned by the postfix user.
_QUEUE_DIRS = {
    "active": ("root", 0o700),
    "bounce": ("root", 0o700),
    "corrupt": ("root", 0o700),
    "defer": ("root", 0o700),
    "deferred": ("root", 0o700),
    "flush": ("root", 0o700),
    "hold": ("root", 0o700),
    "incoming": ("root", 0o700),
    "private": ("root", 0o700),
    "saved": ("root", 0o700),
    "trace": ("root", 0o700),
    "maildrop": ("postdrop", 0o730),
    "public": ("postdrop", 0o710),
}


class PostfixError(RuntimeError):
    """The instance could not be set up, started or used; the message says why."""


def unavailable() -> str | None:
    """Why a throw-away Postfix cannot run here, or ``None`` when it can."""
    if not MASTER.is_file() or not SENDMAIL.is_file():
        return f"Postfix is not installed ({MASTER}, {SENDMAIL}; apt-get install postfix)"
    if os.geteuid() != 0:
        return "Postfix's master must run as root"
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError as error:
        return f"Postfix's user or group is missing: {error}"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def receiving(message_size_limit: int = 10_240_000) -> dict[str, str]:
    """Settings for a reference receiver that accepts and discards all mail."""
    if message_size_limit < 0:
        raise ValueError(f"message_size_limit: expected >= 0, got {message_size_limit}")
    return {
        "mydestination": "dest.test",
        "local_transport": "discard:",
        "default_transport": "discard:",
        "relay_transport": "discard:",
        "local_recipient_maps": "",
        "smtpd_relay_restrictions": "permit_mynetworks, reject",
        "smtpd_recipient_restrictions": "permit",
        "message_size_limit": str(message_size_limit),
    }


def relaying(port: int, *, xforward: bool = False) -> dict[str, str]:
    """Settings for an instance that relays every message to ``[127.0.0.1]:port``."""
    if not 0 < port < 65536:
        raise ValueError(f"port: expected 1..65535, got {port}")
    return {
        "mydestination": "",
        "relayhost": f"[{HOST}]:{port}",
        "default_transport": "smtp",
        "relay_transport": "smtp",
        "smtpd_relay_restrictions": "permit_mynetworks, reject",
        "smtp_send_xforward_command": "yes" if xforward else "no",
        "smtp_tls_security_level": "none",
        "smtp_address_preference": "ipv4",
    }


def _base_settings(root: Path) -> dict[str, str]:
    return {
        "compatibility_level": "3.6",
        "queue_directory": str(root / "queue"),
        "data_directory": str(root / "data"),
        "maillog_file": str(root / "maillog"),
        # Postfix only writes its log under these prefixes (default: /var, /dev/stdout).
        "maillog_file_prefixes": str(root),
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "myhostname": "postfix.test",
        "mydomain": "postfix.test",
        "myorigin": "postfix.test",
        "inet_interfaces": HOST,
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "alias_maps": "",
        "alias_database": "",
        "biff": "no",
        # Replies at once: by default smtpd sleeps a second after each error.
        "smtpd_error_sleep_time": "0",
        "queue_run_delay": "1s",
        "minimal_backoff_time": "1s",
        "maximal_backoff_time": "2s",
    }


class Postfix:
    """A throw-away Postfix instance (see the module's docstring).

    Args:
        settings: ``main.cf`` parameters on top of the instance's own
            (from :func:`receiving` or :func:`relaying`).

    Attributes:
        root: the temporary folder that holds everything.
        port: the port of its smtpd on 127.0.0.1.
    """

    LOG_TITLE = "Postfix log"

    def __init__(self, settings: Mapping[str, str]) -> None:
        reason = unavailable()
        if reason is not None:
            raise PostfixError(reason)
        # Postfix's daemons run as "postfix" and must reach the queue: 0755, not mkdtemp's 0700.
        self.root = Path(tempfile.mkdtemp(prefix="smtpkit-postfix-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.config = self.root / "conf"
        self._settings = {**_base_settings(self.root), **settings}
        self._master: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        self.config.mkdir()
        lines = [f"{name} = {value}" for name, value in self._settings.items()]
        (self.config / "main.cf").write_text("\n".join(lines) + "\n")
        listener = f"{HOST}:{self.port} inet n - n - - smtpd\n"
        (self.config / "master.cf").write_text(listener + _SERVICES)

    def _make_directories(self) -> None:
        owner = pwd.getpwnam("postfix").pw_uid
        queue = self.root / "queue"
        queue.mkdir(mode=0o755)
        (queue / "pid").mkdir(mode=0o755)
        for name, (group, mode) in _QUEUE_DIRS.items():
            path = queue / name
            path.mkdir()
            os.chown(path, owner, grp.getgrnam(group).gr_gid)
            path.chmod(mode)
        data = self.root / "data"
        data.mkdir(mode=0o700)
        os.chown(data, owner, -1)

    def start(self) -> None:
        """Write the configuration, start ``master`` and wait until smtpd listens.

        Raises:
            PostfixError: master exited, or smtpd did not listen within
                ``START_LIMIT`` seconds (the error holds the log).
        """
        self._write_config()
        self._make_directories()
        command = [str(MASTER), "-c", str(self.config), "-d"]
        self._master = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=(self.root / "master.err").open("wb")
        )
        deadline = time.monotonic() + START_LIMIT
        while not self._listening():
            if self._master.poll() is not None:
                raise PostfixError(
                    f"{command} exited with {self._master.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise PostfixError(f"smtpd did not listen in {START_LIMIT} s:\n{self.log()}")
            time.sleep(0.05)

    def _listening(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as sock:
                # A greeting shows that smtpd, not only master's socket, is up.
                sock.recv(512)
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """Stop master (and with it every daemon) and remove the folder."""
        if self._master is not None and self._master.poll() is None:
            self._master.terminate()
            try:
                self._master.wait(STOP_LIMIT)
            except subprocess.TimeoutExpired:
                self._master.kill()
                self._master.wait(STOP_LIMIT)
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        """The instance's log so far (master's stderr, then ``maillog_file``)."""
        parts = []
        for name in ("master.err", "maillog"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    def wait_log(self, pattern: str, limit: float = 20.0) -> re.Match[str]:
        """Wait until a log line matches ``pattern`` (a regex); return the match.

        Raises:
            PostfixError: no match within ``limit`` seconds (the error holds the log).
        """
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log(), re.MULTILINE)
            if match is not None:
                return match
            time.sleep(0.05)
        raise PostfixError(f"no log line matched {pattern!r} in {limit} s:\n{self.log()}")

    def sendmail(
        self,
        sender: str,
        recipients: Sequence[str],
        message: bytes,
        *,
        notify: str | None = None,
        envid: str | None = None,
    ) -> None:
        """Inject a message with Postfix's ``sendmail -C DIR``.

        Args:
            notify: DSN NOTIFY for every recipient (``-N``), e.g. ``"success,failure"``.
            envid: the DSN envelope id (``-V``).

        Raises:
            PostfixError: sendmail failed (the error holds its output).
        """
        if not recipients:
            raise ValueError("recipients: expected at least one address, got none")
        command = [str(SENDMAIL), "-C", str(self.config), "-f", sender]
        if notify is not None:
            command += ["-N", notify]
        if envid is not None:
            command += ["-V", envid]
        command += ["--", *recipients]
        done = subprocess.run(command, input=message, capture_output=True, timeout=30)
        if done.returncode != 0:
            raise PostfixError(f"{command} exited with {done.returncode}: {done.stderr!r}")
