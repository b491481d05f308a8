"""TARGET forms and the error messages of target discovery.

Most checks use ``smtpkit routes TARGET``, which loads the target exactly as
``run`` does and exits; a few serve the target and talk to it.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Start
from .helpers import HOST, READY, clean_env, run_once, send, write

FACTORY = """
from smtpkit import App

def create_app(hostname, limit=1):
    return App(name=f"made-{hostname}-{limit}")
"""
HANDLER = """
class Handler:
    async def handle_DATA(self, server, session, envelope):
        print("handled", envelope.mail_from, len(envelope.content), flush=True)
        return "250 Stored by the handler"

handler = Handler()
"""


@pytest.fixture
def modules(project: Path) -> Path:
    """``project`` plus one module per discovery case."""
    write(project, "factory.py", FACTORY)
    write(
        project,
        "makeonly.py",
        "from smtpkit import App\n\ndef make_app():\n    return App(name='made')\n",
    )
    write(project, "single.py", "from smtpkit import App\n\nserver = App(name='single')\n")
    write(project, "appl.py", "from smtpkit import App\n\napplication = App(name='appl')\n")
    write(project, "handlers.py", HANDLER)
    write(
        project, "twoapps.py", "from smtpkit import App\n\na = App(name='a')\nb = App(name='b')\n"
    )
    write(project, "empty.py", "X = 1\n")
    write(project, "broken.py", "import os\n\nraise RuntimeError('boom at import')\n")
    write(project, "needsdep.py", "import nosuchdependency_xyz\n")
    write(project, "syntaxerr.py", "def f(:\n    pass\n")
    write(project, "pkg/__init__.py", "")
    write(project, "pkg/sub/__init__.py", "")
    write(project, "pkg/sub/helper.py", "NAME = 'from-a-package'\n")
    write(
        project,
        "pkg/sub/mod.py",
        "from smtpkit import App\nfrom .helper import NAME\n\napp = App(name=NAME)\n",
    )
    write(
        project,
        "scripts/standalone.py",
        "from smtpkit import App\n\napp = App(name='standalone')\n",
    )
    return project


def described(modules: Path, target: str) -> str:
    result = run_once("routes", target, cwd=modules)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[0]


@pytest.mark.parametrize(
    ("target", "first_line"),
    [
        ("mailapp:app", "App 'app' (mailapp:app)"),
        ("mailapp", "App 'app' (mailapp)"),
        ("appl", "App 'appl' (appl)"),
        ("single", "App 'single' (single)"),
        ("makeonly", "App 'made' (makeonly)"),
        (
            "factory:create_app('mx.example', limit=3)",
            "App 'made-mx.example-3' (factory:create_app('mx.example', limit=3))",
        ),
        ("factory:create_app(hostname='h')", "App 'made-h-1' (factory:create_app(hostname='h'))"),
        ("pkg.sub.mod:app", "App 'from-a-package' (pkg.sub.mod:app)"),
        ("pkg/sub/mod.py:app", "App 'from-a-package' (pkg/sub/mod.py:app)"),
        ("pkg/sub/mod.py", "App 'from-a-package' (pkg/sub/mod.py)"),
        ("scripts/standalone.py:app", "App 'standalone' (scripts/standalone.py:app)"),
        ("handlers:handler", "handler Handler (handlers:handler), served with the SMTP class"),
        ("handlers:Handler()", "handler Handler (handlers:Handler()), served with the SMTP class"),
        (
            "smtpkit.handlers:Sink()",
            "handler Sink (smtpkit.handlers:Sink()), served with the SMTP class",
        ),
    ],
)
def test_target_forms(modules: Path, target: str, first_line: str) -> None:
    assert described(modules, target) == first_line


def test_target_from_the_environment(modules: Path) -> None:
    result = run_once("routes", cwd=modules, env={"SMTPKIT_APP": "single"})
    assert result.stdout.startswith("App 'single' (single)")


FORMS = "expected 'module:name', 'module:create_app()' or 'path/to/file.py:name'"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "nosuchmod:app",
            "could not import 'nosuchmod': no module named 'nosuchmod' (searched sys.path, "
            "which starts with ",
        ),
        ("nosuchmod:app", FORMS),
        ("pkg.nosuch:app", "could not import 'pkg.nosuch': no module named 'pkg.nosuch'"),
        ("missing.py:app", "no file 'missing.py' (looked in "),
        (
            "mailapp:ap",
            "module 'mailapp' has no attribute 'ap'; " + FORMS + " (such as 'mailapp:app'); "
            "did you mean 'app'?\n",
        ),
        ("mailapp:app.nothing", "'mailapp:app' has no attribute 'nothing'"),
        (
            "mailapp:app[0]",
            "'app[0]' after ':' is not a name or a call with literal arguments (it is not a "
            "name); expected 'mailapp:name' or 'mailapp:create_app(\"literal\", 1)'",
        ),
        (
            "mailapp:app(",
            "'app(' after ':' is not a name or a call with literal arguments (it does not parse)",
        ),
        (
            "factory:create_app(os.getcwd())",
            "(its arguments must be literals (strings, numbers, lists, dicts, ...))",
        ),
        (
            "factory:create_app(1, 2, 3)",
            "cannot call create_app(1, 2, 3) from module 'factory': too many positional "
            "arguments; its signature is create_app(hostname, limit=1); give literal "
            "arguments: 'factory:create_app(...)'",
        ),
        (
            "factory:create_app()",
            "cannot call create_app() from module 'factory': missing a required argument: "
            "'hostname'",
        ),
        (
            "mailapp:os",
            "'mailapp:os' is a module (<module 'os'",
        ),
        ("mailapp:os", "not an App or an SMTP handler object (an object with handle_* methods)"),
        (
            "handlers:Handler",
            "'handlers:Handler' is a class; name an instance, or call it: 'handlers:Handler()'",
        ),
        (
            "twoapps",
            "module 'twoapps' has several App instances (a, b); name one, such as 'twoapps:a'",
        ),
        (
            "empty",
            "could not find an app in module 'empty': tried the names 'app' and 'application', "
            "a single App instance, and the factories create_app() and make_app(); name one "
            "with 'empty:NAME' or 'empty:create_app()'",
        ),
        (":app", "TARGET ':app' has no module; " + FORMS),
        ("mailapp:", "TARGET 'mailapp:' has nothing after ':'; " + FORMS),
    ],
)
def test_target_errors(modules: Path, target: str, message: str) -> None:
    result = run_once("run", target, "--port", "0", cwd=modules)
    assert result.returncode == 2
    assert result.stderr.startswith("smtpkit run: error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "?;" not in result.stderr and "?." not in result.stderr


@pytest.mark.parametrize(
    ("target", "own_error"),
    [
        ("broken", "RuntimeError: boom at import"),
        ("needsdep:app", "ModuleNotFoundError: No module named 'nosuchdependency_xyz'"),
        ("syntaxerr", "SyntaxError: "),
    ],
)
def test_a_module_that_fails_to_import_shows_its_own_traceback(
    modules: Path, target: str, own_error: str
) -> None:
    result = run_once("run", target, "--port", "0", cwd=modules)
    module = target.partition(":")[0]
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"smtpkit run: error: importing {module!r} failed; its traceback:\n"
    )
    assert own_error in result.stderr
    assert f'File "{modules / module}.py", line ' in result.stderr
    # The traceback starts in the module, not in the import machinery.
    assert "importlib" not in result.stderr
    assert "discovery.py" not in result.stderr
    assert "could not import" not in result.stderr


RAISING = """
from smtpkit import App
from smtpkit.handlers import Mailbox


def create_app():
    return connect("db.example")


def connect(host):
    raise ConnectionRefusedError(111, f"cannot reach {host}")


def mailbox(folder):
    return Mailbox(folder)
"""


@pytest.mark.parametrize(
    ("target", "label", "own_error", "frames"),
    [
        (
            "raising:create_app()",
            "raising:create_app()",
            "ConnectionRefusedError: [Errno 111] cannot reach db.example",
            ["create_app", "connect"],
        ),
        (
            "raising",
            "raising:create_app()",
            "ConnectionRefusedError: [Errno 111] cannot reach db.example",
            ["create_app", "connect"],
        ),
        (
            "raising:mailbox(42)",
            "raising:mailbox(42)",
            "TypeError: ",
            ["mailbox"],
        ),
        (
            "smtpkit.handlers:Mailbox(42)",
            "smtpkit.handlers:Mailbox(42)",
            "TypeError: ",
            [],
        ),
    ],
)
def test_a_factory_that_raises_shows_its_own_traceback(
    modules: Path, target: str, label: str, own_error: str, frames: list[str]
) -> None:
    write(modules, "raising.py", RAISING)
    for command, flags in (("run", ["--port", "0"]), ("routes", [])):
        result = run_once(command, target, *flags, cwd=modules)
        assert result.returncode == 1, result.stderr
        lines = result.stderr.splitlines()
        assert lines[0] == f"smtpkit {command}: error: calling {label!r} failed; its traceback:"
        assert lines[1] == "Traceback (most recent call last):"
        assert own_error in lines[-1]
        for frame in frames:
            assert f'File "{modules / "raising.py"}", line ' in result.stderr
            assert f", in {frame}\n" in result.stderr
        # The traceback starts in the user's call, not in smtpkit's command line.
        assert "discovery.py" not in result.stderr
        assert "cli.py" not in result.stderr
        assert "listening on" not in result.stderr


def test_serves_an_app(start: Start, modules: Path) -> None:
    command = start("run", "mailapp:app", "--port", "0")
    port = command.port()
    with smtplib.SMTP(HOST, port, timeout=READY) as client:
        assert client.ehlo()[0] == 250
        assert client.ehlo_resp is not None and client.ehlo_resp.startswith(b"app.example")
        code, reply = client.docmd("PID")
        assert (code, reply.split()) == (250, [b"2.0.0", str(command.pid).encode()])
        client.sendmail("a@example.com", ["zoe@example.com"], "Subject: x\r\n\r\nhello\r\n")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("a@example.com", ["zoe@elsewhere.example"], "x\r\n")
    name, size = command.wait_for(r"^delivered (\w+) (\d+)$", "stdout").groups()
    # The 21 octets sent, after the Received field the App puts in front.
    assert name == "zoe" and int(size) > 21 + len("Received: from [127.0.0.1]")


def test_serves_a_handler_with_the_smtp_class(start: Start, modules: Path) -> None:
    command = start("run", "handlers:handler", "--port", "0")
    port = command.port()
    with smtplib.SMTP(HOST, port, timeout=READY) as client:
        client.ehlo()
        client.mail("a@example.com")
        client.rcpt("anyone@anywhere.example")
        assert client.data(b"Subject: s\r\n\r\nbody\r\n") == (250, b"2.0.0 Stored by the handler")
    assert command.wait_for(r"^handled (\S+) (\d+)$", "stdout").groups() == ("a@example.com", "20")


def test_serves_a_file_target(start: Start, modules: Path) -> None:
    command = start("run", "scripts/standalone.py:app", "--port", "0")
    command.wait_for(r"serving App 'standalone' \(scripts/standalone.py:app\)")
    send(command.port(), recipients=("x@example.com",))


def test_python_dash_m_and_the_console_script_agree(modules: Path) -> None:
    script = Path(sys.executable).with_name("smtpkit")
    if not script.exists():
        script_path = shutil.which("smtpkit")
        if script_path is None:
            pytest.skip("the smtpkit console script is not installed next to this Python")
        script = Path(script_path)
    for arguments in (["--version"], ["routes", "mailapp"]):
        by_script = subprocess.run(
            [str(script), *arguments],
            cwd=modules,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=READY,
            check=False,
        )
        by_module = run_once(*arguments, cwd=modules)
        assert by_script.returncode == by_module.returncode == 0, by_script.stderr
        assert by_script.stdout == by_module.stdout
    assert by_module.stdout.startswith("App 'app' (mailapp)")


def test_version(tmp_path: Path) -> None:
    from smtpkit import __version__

    for arguments in (["--version"], ["run", "--version"]):
        result = run_once(*arguments, cwd=tmp_path)
        assert result.returncode == 0
        assert result.stdout.startswith(f"smtpkit {__version__} (Python ")


def test_no_command_prints_the_help(tmp_path: Path) -> None:
    result = run_once(cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == run_once("--help", cwd=tmp_path).stdout
    assert result.stderr.startswith("usage: smtpkit [-h] [--version] COMMAND ...\n")
    for command in ("run", "routes", "check", "passwd"):
        assert f"\n    {command} " in result.stderr
    assert os.listdir(tmp_path) == []
