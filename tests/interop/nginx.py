"""nginx's mail proxy on 127.0.0.1 in front of an SMTP server, with or without XCLIENT.

nginx (Debian: ``nginx`` and ``libnginx-mod-mail``) runs in the foreground
(``-g 'daemon off;'``) from a configuration, prefix, pid file and error log
of its own in a temporary folder. Its mail proxy asks an ``auth_http``
server where to send each session; :class:`AuthResponder` is that server, a
tiny HTTP responder on 127.0.0.1 that always answers ``Auth-Status: OK`` and
names the upstream's address and port, and keeps the headers nginx sent.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"
MAIL_MODULE = Path("/usr/lib/nginx/modules/ngx_mail_module.so")
START_LIMIT = 15.0
STOP_LIMIT = 10.0


def nginx_program() -> str | None:
    """The path of nginx, or ``None``."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")


def unavailable() -> str | None:
    """Why nginx's mail proxy cannot run here, or ``None`` when it can."""
    if nginx_program() is None:
        return "nginx is not installed (apt-get install nginx libnginx-mod-mail)"
    if not MAIL_MODULE.is_file():
        return f"nginx's mail module {MAIL_MODULE} is missing (apt-get install libnginx-mod-mail)"
    return None


class AuthResponder:
    """An ``auth_http`` server that sends every session to ``127.0.0.1:upstream_port``.

    Attributes:
        requests: the headers of every request nginx made, in order (lower-cased names).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.requests: list[dict[str, str]] = []
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                responder.requests.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("Auth-Status", "OK")
                self.send_header("Auth-Server", HOST)
                self.send_header("Auth-Port", str(responder.upstream_port))
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Keep the test's output quiet."""

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> AuthResponder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Nginx:
    """nginx's SMTP proxy on 127.0.0.1 (see the module's docstring).

    Args:
        auth_port: the port of the ``auth_http`` server on 127.0.0.1.
        xclient: whether nginx sends XCLIENT to the upstream (``xclient on``).

    Attributes:
        port: the port nginx's SMTP listener has on 127.0.0.1.
    """

    LOG_TITLE = "nginx error log"

    def __init__(self, auth_port: int, *, xclient: bool) -> None:
        reason = unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        self.root = Path(tempfile.mkdtemp(prefix="smtpkit-nginx-"))
        self.port = _free_port()
        self.auth_port = auth_port
        self.xclient = xclient
        self._process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        """The text of nginx.conf."""
        return f"""
load_module {MAIL_MODULE};
worker_processes 1;
pid {self.root}/nginx.pid;
error_log {self.root}/error.log info;
events {{ worker_connections 64; }}
mail {{
    server_name nginx.test;
    auth_http {HOST}:{self.auth_port}/auth;
    proxy_pass_error_message on;
    server {{
        listen {HOST}:{self.port};
        protocol smtp;
        smtp_auth none;
        xclient {"on" if self.xclient else "off"};
    }}
}}
"""

    def start(self) -> None:
        """Write the configuration, start nginx and wait until it listens.

        Raises:
            RuntimeError: nginx exited, or did not listen within ``START_LIMIT`` seconds.
        """
        conf = self.root / "nginx.conf"
        conf.write_text(self.config())
        program = nginx_program()
        assert program is not None
        command = [program, "-p", str(self.root), "-e", str(self.root / "error.log")]
        command += ["-c", str(conf), "-g", "daemon off;"]
        stderr = (self.root / "stderr.log").open("wb")
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + START_LIMIT
        while not self._listening():
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"{command} exited with {self._process.returncode}:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not listen in {START_LIMIT} s:\n{self.log()}")
            time.sleep(0.05)

    def _listening(self) -> bool:
        try:
            socket.create_connection((HOST, self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """Stop nginx (SIGTERM, then SIGKILL) and remove its folder."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_LIMIT)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(STOP_LIMIT)
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        """nginx's stderr and error log so far."""
        parts = []
        for name in ("stderr.log", "error.log"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)
