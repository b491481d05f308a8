"""The ``smtpkit`` command (also ``python -m smtpkit``).

* ``smtpkit run [TARGET]``: serve an App, a handler object, or (without TARGET) the
  embedded default that stores every message in a Maildir;
* ``smtpkit routes [TARGET]``: what an app has registered;
* ``smtpkit check [TARGET] --rcpt ADDRESS``: which route takes an address, or why none;
* ``smtpkit reload --pid-file PATH``: make a running server reload (SIGHUP);
* ``smtpkit passwd …``: manage a password file (:mod:`smtpkit.auth.passwd`).

Exit status: 0 on success (and after a graceful stop), 1 when serving failed (the
address cannot be bound, the target's module raised while importing, its factory
raised) or ``check`` found no route, 2 for a usage or configuration error (``smtpkit``
alone prints the help and exits 2), 141 (128 + SIGPIPE) when the reader of the output
went away. ``docs/cli.md`` is the reference; a test keeps it in step with ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import signal
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cli.discovery import Target, TargetRaisedError, load_target, source_roots
from ._cli.options import UsageError, add_server_flags, flag_arguments
from ._cli.settings import config_file, load_config
from ._version import __version__
from .config import ConfigError, ServerConfig
from .http.options import HttpOptions, add_http_flags, http_arguments, http_options_from

if TYPE_CHECKING:
    from ._cli.serving import ServePlan

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
#: The environment variable read when TARGET is not given.
ENV_TARGET = "SMTPKIT_APP"

log = logging.getLogger("smtpkit.cli")
_DISCOVERY_FILE = sys.modules[load_target.__module__].__file__

_TARGET_HELP = (
    "what to serve: 'module:app', 'module:create_app()' (literal arguments only), "
    "'path/to/file.py:app', or 'module' alone (finds app, application, the only App, or "
    "create_app()/make_app()); may name an SMTP handler object too. Default: "
    f"${ENV_TARGET}, else the embedded default that stores every message in a Maildir"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``smtpkit`` command.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments:
        build_parser().print_help(sys.stderr)
        return EXIT_USAGE
    if arguments[:1] == ["passwd"]:
        from .auth.passwd import main as passwd_main

        return passwd_main(arguments[1:], prog="smtpkit passwd")
    namespace = build_parser().parse_args(arguments)
    prog = f"smtpkit {namespace.command}"
    try:
        status: int = namespace.func(namespace)
        sys.stdout.flush()
    except BrokenPipeError:
        return _reader_gone()
    except KeyboardInterrupt:
        # Ctrl-C before the server handles signals itself (while importing, say).
        return 128 + signal.SIGINT
    except UsageError as exc:
        return _fail(prog, str(exc), EXIT_USAGE)
    except TargetRaisedError as exc:
        print(f"{prog}: error: {exc}; its traceback:", file=sys.stderr)
        _print_own_traceback(exc.__cause__ or exc)
        return EXIT_FAILURE
    return status


def _reader_gone() -> int:
    """Stop quietly when the reader of stdout closed it (``smtpkit routes app | head -1``)."""
    # The interpreter flushes stdout once more at exit; send that to /dev/null so it
    # cannot fail again and print a traceback.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


def _print_own_traceback(error: BaseException) -> None:
    """Print a traceback that starts in the user's code, not in the import machinery."""
    tb = error.__traceback__
    while tb is not None and _is_import_machinery(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb, file=sys.stderr)


def _is_import_machinery(filename: str) -> bool:
    return (
        filename.startswith("<frozen importlib")
        or filename == _DISCOVERY_FILE
        or Path(filename).parts[-2:] == ("importlib", "__init__.py")
    )


def _fail(prog: str, message: str, status: int) -> int:
    from ._output import drain

    drain()  # the log lines still queued come first: the error is the last line
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return status


# -- the parser ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``smtpkit`` and its subcommands.

    Returns:
        The parser; each subcommand stores its function as ``func``.
    """
    parser = argparse.ArgumentParser(
        prog="smtpkit",
        description="Run and inspect smtpkit SMTP servers.",
        allow_abbrev=False,
    )
    _add_version(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_run(commands)
    _add_routes(commands)
    _add_check(commands)
    _add_reload(commands)
    commands.add_parser(
        "passwd",
        help="manage a password file (smtpkit passwd --help)",
        add_help=False,
        allow_abbrev=False,
    )
    return parser


def _add_version(parser: argparse.ArgumentParser) -> None:
    version = f"smtpkit {__version__} (Python {platform.python_version()})"
    parser.add_argument("--version", action="version", version=version)


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="serve an app, a handler, or the embedded default",
        description="Serve TARGET until SIGTERM or SIGINT (then finish open sessions).",
        allow_abbrev=False,
    )
    run.add_argument("target", nargs="?", metavar="TARGET", help=_TARGET_HELP)
    run.add_argument("--config", metavar="FILE", help="TOML config file [SMTPKIT_CONFIG]")
    run.add_argument(
        "--reload",
        action="store_true",
        help="restart when a .py file of the project changes (for development)",
    )
    run.add_argument(
        "--pid-file",
        metavar="PATH",
        help="write the server's process id to PATH while it runs (for smtpkit reload)",
    )
    _add_version(run)
    add_server_flags(run)
    add_http_flags(run)
    # Set by the worker supervisor on the command lines of its workers.
    run.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    run.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)
    run.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    run.set_defaults(func=_run)


def _add_reload(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reload = commands.add_parser(
        "reload",
        help="make a running server reload its configuration, certificates and passwords",
        description=(
            "Send SIGHUP to the server whose process id is in PATH (smtpkit run --pid-file "
            "PATH): it loads its configuration, TLS certificates and password files again; "
            "open sessions keep the old ones. With --workers, the workers restart one at a time."
        ),
        allow_abbrev=False,
    )
    reload.add_argument(
        "--pid-file", metavar="PATH", required=True, help="the pid file of smtpkit run"
    )
    reload.set_defaults(func=_reload)


def _add_routes(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    routes = commands.add_parser(
        "routes",
        help="list an app's commands, hooks, AUTH mechanisms, blueprints and routes",
        description="List what TARGET has registered.",
        allow_abbrev=False,
    )
    routes.add_argument("target", nargs="?", metavar="TARGET", help=_TARGET_HELP)
    routes.set_defaults(func=_routes)


def _add_check(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "check",
        help="say which route would take a recipient address, or why none",
        description="Say which recipient route of TARGET takes each ADDRESS (exit 1 if none).",
        allow_abbrev=False,
    )
    check.add_argument("target", nargs="?", metavar="TARGET", help=_TARGET_HELP)
    check.add_argument(
        "--rcpt",
        metavar="ADDRESS",
        action="append",
        required=True,
        help="a recipient address, as in RCPT TO (repeat for several)",
    )
    check.set_defaults(func=_check)


# -- smtpkit routes / check ----------------------------------------------------------------


def _target_or_default(text: str | None) -> Target:
    text = text or os.environ.get(ENV_TARGET) or None
    if text is not None:
        return load_target(text)
    from .default_app import create_handler

    return Target("the embedded default", "handler", create_handler(ServerConfig().maildir))


def _routes(namespace: argparse.Namespace) -> int:
    from ._cli.introspect import routes_lines

    print("\n".join(routes_lines(_target_or_default(namespace.target))))
    return EXIT_OK


def _check(namespace: argparse.Namespace) -> int:
    from ._cli.introspect import check_lines

    target = _target_or_default(namespace.target)
    status = EXIT_OK
    for address in namespace.rcpt:
        taken, lines = check_lines(target, address)
        print("\n".join(lines))
        status = status if taken else EXIT_FAILURE
    return status


# -- smtpkit run ---------------------------------------------------------------------------


def _run(namespace: argparse.Namespace) -> int:
    namespace.target = namespace.target or os.environ.get(ENV_TARGET) or None
    http = http_options_from(namespace)
    if namespace.reload and namespace.worker is None:
        return _run_with_reload(namespace)
    target = load_target(namespace.target) if namespace.target else None
    config = _load(namespace, target)
    configure_logging(config.log_level, config.log_format)
    if namespace.worker is not None:
        _count_for_the_pool()
        return _serve(target, config, namespace, http=http)
    if config.workers.count > 1:
        return _run_workers(namespace, target, config)
    return _serve(target, config, namespace, http=http)


def _count_for_the_pool() -> None:
    """In a worker of a pool with ``/metrics``, count into the pool's metrics directory."""
    from . import metrics

    if os.environ.get(metrics.MULTIPROCESS_ENV) and metrics.available():
        metrics.enable()


def _load(namespace: argparse.Namespace, target: Target | None) -> ServerConfig:
    """The config to serve with (again on each reload); a worker's listens with SO_REUSEPORT."""
    base = target.obj.config if target is not None and target.kind == "app" else None
    config = load_config(namespace, base)
    if namespace.worker is not None:
        config = config.replace(**{"listen.reuse_port": True, "workers.count": 1})
    return config


def _child_arguments(namespace: argparse.Namespace, *, skip: Sequence[str] = ()) -> list[str]:
    """``run`` arguments reproducing this command, for a worker or a reload child."""
    arguments = ["run"]
    if namespace.target:
        arguments.append(namespace.target)
    if namespace.config:
        arguments.append(f"--config={namespace.config}")
    return arguments + flag_arguments(namespace, skip=skip) + http_arguments(namespace)


def _serve(
    target: Target | None,
    config: ServerConfig,
    namespace: argparse.Namespace,
    *,
    http: HttpOptions | None = None,
) -> int:
    from ._cli.serving import serve_in_process

    try:
        config.tls.server_context()  # unreadable certificate files: fail before listening
        plan = _plan(target, config)
        plan.load_config = lambda: _load(namespace, target)
        plan.worker = namespace.worker
        plan.pid_file = namespace.pid_file
        if namespace.listen_fd is not None:
            plan.sock = socket.socket(fileno=namespace.listen_fd)
        if namespace.ready_fd is not None and namespace.ready_fd >= 0:
            plan.ready_fd = namespace.ready_fd
        if http is not None:
            plan.http = _http_service(http, config)
        serve_in_process(plan)
    except ConfigError as exc:
        return _fail("smtpkit run", str(exc), EXIT_USAGE)
    except UsageError:
        raise
    except Exception as exc:
        return _serving_failed(exc)
    return EXIT_OK


def _http_service(
    options: HttpOptions, config: ServerConfig
) -> Callable[..., Coroutine[Any, Any, None]]:
    """The capture UI over the ``--maildir`` folder, ``/healthz`` and ``/metrics``."""
    import functools

    from . import metrics
    from .http.health import health_routes
    from .http.server import serve_http

    with_metrics = metrics.available()
    if not with_metrics:
        log.info("no /metrics on the HTTP listener: prometheus-client is not installed "
                 "(pip install 'smtpkit-server[metrics]')")  # fmt: skip
    routes = health_routes(with_metrics=with_metrics)
    return functools.partial(serve_http, options, config.maildir, routes=routes)


def _serving_failed(error: Exception) -> int:
    """Report why serving stopped: the address in one line, anything else with its traceback."""
    from .server import listen_error

    reason = listen_error(error)
    if reason is not None:
        return _fail("smtpkit run", reason, EXIT_FAILURE)
    log.critical("serving failed", exc_info=error)
    return EXIT_FAILURE


def _plan(target: Target | None, config: ServerConfig) -> ServePlan:
    from ._cli.serving import ServePlan
    from .ratelimit import with_rate_limits
    from .routing.app import refresh_password_file
    from .smtp import SMTP

    if target is not None and target.kind == "app":
        plan: ServePlan = target.obj._serve_plan(config, target.describe())
        return plan
    if target is None:
        from .default_app import create_handler

        handler = create_handler(config.maildir)
        title = f"the embedded default, storing every message in {os.path.abspath(config.maildir)}"
    else:
        handler, title = target.obj, target.describe()

    def factory_for(config: ServerConfig) -> Callable[[], SMTP]:
        limited = with_rate_limits(handler, config)
        return lambda: SMTP(limited, config=config)

    def refresh() -> None:
        refresh_password_file(getattr(handler, "authenticator", None))

    return ServePlan(factory_for, config, title, refresh=refresh, default_app=target is None)


def _reload(namespace: argparse.Namespace) -> int:
    """``smtpkit reload``: SIGHUP to the process named by the pid file."""
    path = namespace.pid_file
    try:
        with open(path, encoding="ascii") as file:
            text = file.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        return _fail("smtpkit reload", f"cannot read the pid file {path!r}: {exc}", EXIT_FAILURE)
    if not text.isdigit() or int(text) < 2:
        return _fail(
            "smtpkit reload", f"{path!r} holds {text!r}; expected a process id", EXIT_FAILURE
        )
    try:
        os.kill(int(text), signal.SIGHUP)
    except ProcessLookupError:
        return _fail(
            "smtpkit reload", f"no process {text} (from {path!r}): is it running?", EXIT_FAILURE
        )
    except PermissionError:
        return _fail("smtpkit reload", f"not allowed to signal process {text}", EXIT_FAILURE)
    print(f"smtpkit reload: sent SIGHUP to process {text}")
    return EXIT_OK


def _run_workers(namespace: argparse.Namespace, target: Target | None, config: ServerConfig) -> int:
    from ._cli.children import smtpkit_command
    from ._cli.serving import check_event_loop, remove_pid_file, write_pid_file
    from .workers import WorkerPool, open_listeners, supervise

    check_event_loop(config)  # once here, not once per worker
    if config.listen.unix_socket:
        raise UsageError(
            f"workers.count = {config.workers.count}: several workers need a TCP address, "
            f"not listen.unix_socket = {config.listen.unix_socket!r}"
        )
    try:
        sockets = open_listeners(config, config.workers.count)
    except OSError as exc:
        return _fail("smtpkit run", exc.strerror or str(exc), EXIT_FAILURE)
    port = sockets[0].getsockname()[1]
    arguments = _child_arguments(namespace, skip=("--port", "--workers"))
    # One capture UI for the pool: worker 1 serves it (it sees every worker's mail).
    http = http_arguments(namespace)
    arguments = [a for a in arguments if a not in http]
    what = target.describe() if target is not None else "the embedded default"
    log.info(
        "smtpkit %s (pid %d): %d workers serving %s on port %d (SO_REUSEPORT)",
        __version__,
        os.getpid(),
        config.workers.count,
        what,
        port,
    )

    def command(index: int, listen_fd: int, ready_fd: int) -> list[str]:
        own = [f"--port={port}", f"--worker={index}", f"--listen-fd={listen_fd}"]
        return smtpkit_command(
            [*arguments, *(http if index == 1 else []), *own, f"--ready-fd={ready_fd}"]
        )

    pool = WorkerPool(
        command, config.workers.count, config.workers.graceful_timeout, config, sockets
    )
    if namespace.pid_file:
        write_pid_file(namespace.pid_file)
    try:
        with _metrics_directory(bool(http)):
            return supervise(pool)
    finally:
        if namespace.pid_file:
            remove_pid_file(namespace.pid_file)
        for sock in pool.sockets:
            sock.close()


@contextlib.contextmanager
def _metrics_directory(wanted: bool) -> Iterator[None]:
    """With ``--http``, a directory for the workers' metrics (prometheus multiprocess mode).

    The workers inherit ``PROMETHEUS_MULTIPROC_DIR``; the one serving ``/metrics`` adds up
    every worker's values. The directory is removed when the pool stops.
    """
    from .metrics import MULTIPROCESS_ENV

    if not wanted or os.environ.get(MULTIPROCESS_ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="smtpkit-metrics-") as directory:
        os.environ[MULTIPROCESS_ENV] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_ENV]


def _run_with_reload(namespace: argparse.Namespace) -> int:
    from ._cli.children import smtpkit_command
    from ._cli.serving import remove_pid_file, write_pid_file
    from .reload import run_with_reloader

    config = load_config(namespace)
    configure_logging(config.log_level, config.log_format)
    roots = source_roots(namespace.target) if namespace.target else []
    path = config_file(namespace, os.environ)
    files = [Path(path)] if path else []
    where = ", ".join(map(str, [*roots, *files])) or "nothing (no TARGET, no config file)"
    log.info("smtpkit %s: reloading on changes in %s", __version__, where)
    command = smtpkit_command(_child_arguments(namespace))
    if namespace.pid_file:
        write_pid_file(namespace.pid_file)
    try:
        return run_with_reloader(command, roots, files, grace=config.workers.graceful_timeout)
    finally:
        if namespace.pid_file:
            remove_pid_file(namespace.pid_file)


# -- logging -------------------------------------------------------------------------------


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr: time, pid, level, logger and message, one line per record.

    Records are formatted where they are logged and written by a thread
    (:mod:`smtpkit._output`), so a stderr nobody reads never blocks the event loop:
    lines beyond the queue are dropped, counted, and the count is logged once stderr
    takes writes again. The time is ISO 8601 with milliseconds and the UTC offset.

    Args:
        level: one of ``LOG_LEVELS``.
        log_format: ``text``, or ``json`` for one JSON object per line
            (:class:`smtpkit._logs.JsonFormatter`).
    """
    from ._logs import JsonFormatter
    from ._output import IsoFormatter, QueueLogHandler, writer_for

    formatter = (
        JsonFormatter()
        if log_format == "json"
        else IsoFormatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
    )
    handler = QueueLogHandler(writer_for("stderr", report=lambda n: handler.dropped_report(n)))
    handler.setFormatter(formatter)
    handler.addFilter(_without_engine_listening)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)


def _without_engine_listening(record: logging.LogRecord) -> bool:
    # The engine logs its bound addresses as tuples; the command prints them itself,
    # formatted (host:port), with the extensions.
    return not (record.name == "smtpkit.server" and record.msg == "listening on %s")
