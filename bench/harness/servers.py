"""Start a server under test, wait until it listens, and read its memory use."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from types import TracebackType

from . import certs, paths, procs
from .context import Context, Variant

READY_TIMEOUT = 30.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


#: Where ``smtpkit-mypyc`` imports smtpkit from: a tree built by bench/mypyc/build.py.
MYPYC_DIR = paths.BENCH_DIR / "results" / "mypyc-build"

#: (interpreter, script) of each Python server; the App is smtpkit with handler "app".
#: ``smtpkit-mypyc`` is the same server with smtpkit imported from :data:`MYPYC_DIR`.
_SCRIPTS = {
    "smtpkit": (paths.project_python, "smtpkit_server.py"),
    "smtpkit-mypyc": (paths.project_python, "smtpkit_server.py"),
    "aiosmtpd": (paths.peers_python, "aiosmtpd_server.py"),
    "ceiling": (paths.project_python, "ceiling_server.py"),
}


def _python_argv(variant: Variant, ctx: Context) -> list[str]:
    python, script = _SCRIPTS[variant.server]
    handler = variant.handler
    if variant.handler == "app":
        script = "app_server.py"
    argv = [python(), str(paths.SERVERS_DIR / script), "--port=0", f"--loop={variant.loop}"]
    if variant.handler == "tls":
        # The sink handler, with a certificate for STARTTLS.
        handler = "sink"
        cert, key, _ca = certs.files(ctx.spool_dir, ctx.log)
        argv += [f"--tls-cert={cert}", f"--tls-key={key}"]
    return [*argv, f"--handler={handler}", f"--spool-dir={ctx.spool_dir}"]


def _sink_argv(ctx: Context, port: int) -> list[str]:
    # smtp-sink refuses to run as root unless told which user to become.
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    return [ctx.smtp_sink, *user, "-m", "20000", "-t", "300", f"127.0.0.1:{port}", "1024"]


def _wait_banner(port: int, proc: procs.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise procs.ChildError(f"smtp-sink: exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                if sock.recv(512).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError:
            time.sleep(0.05)
    raise procs.ChildError(f"smtp-sink: no greeting on port {port} within {timeout:.0f} s")


class Server:
    """A running server under test; use it as a context manager so it is always stopped."""

    def __init__(self, variant: Variant, ctx: Context) -> None:
        self.variant = variant
        self.ctx = ctx
        self.port = 0
        self._proc: procs.Popen | None = None

    def __enter__(self) -> Server:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        ctx, variant = self.ctx, self.variant
        if variant.server == "smtp-sink":
            self.port = free_port()
            self._proc = procs.spawn(_sink_argv(ctx, self.port), cpu=ctx.server_cpu, log=ctx.log)
            _wait_banner(self.port, self._proc, READY_TIMEOUT)
            return
        env = {}
        if variant.server == "smtpkit":
            env = {"PYTHONPATH": str(paths.REPO_DIR)}
        elif variant.server == "smtpkit-mypyc":
            env = {"PYTHONPATH": str(MYPYC_DIR)}
        argv = _python_argv(variant, ctx)
        self._proc = procs.spawn(argv, cpu=ctx.server_cpu, log=ctx.log, env=env)
        line = procs.read_line(self._proc, READY_TIMEOUT, variant.label)
        if not line.startswith("READY "):
            raise procs.ChildError(f"{variant.label}: expected 'READY <port>', got {line!r}")
        self.port = int(line.split()[1])

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self._proc is not None
        return self._proc.pid

    def rss_kib(self) -> int:
        """The server's resident memory now (VmRSS), in KiB."""
        return procs.status_kib(self.pid, "VmRSS")

    def peak_rss_kib(self) -> int:
        """The server's peak resident memory since it started (VmHWM), in KiB."""
        return procs.status_kib(self.pid, "VmHWM")

    def close(self) -> None:
        """Stop the server and its process group."""
        if self._proc is not None:
            procs.stop(self._proc)
            self._proc = None


def smtpkit_importable(compiled: bool = False) -> tuple[bool, str]:
    """Whether the project's interpreter can import smtpkit's server modules, and why not.

    With ``compiled``, from :data:`MYPYC_DIR`, whose DATA decoder (compiled in every
    build) must be an extension module.
    """
    code = "import smtpkit.smtp, smtpkit.handlers"
    if compiled:
        code += "; import smtpkit._data as m; assert m.__file__.endswith('.so'), 'not compiled'"
    result = subprocess.run(
        [paths.project_python(), "-c", code],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(MYPYC_DIR if compiled else paths.REPO_DIR)),
        # "python -c" looks in the current directory first: not the checkout's smtpkit.
        cwd=MYPYC_DIR if compiled else None,
        timeout=60,
        check=False,
    )
    lines = result.stderr.strip().splitlines()
    return result.returncode == 0, lines[-1] if lines else ""
