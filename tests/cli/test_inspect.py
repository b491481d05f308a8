"""``smtpkit routes`` and ``smtpkit check``."""

from __future__ import annotations

import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from .helpers import EXIT, clean_env, run_once, smtpkit, write

SHOP = textwrap.dedent(
    """
    from smtpkit import App, AuthResult, Blueprint

    app = App(name="shop")
    support = Blueprint("support")


    @support.route("(user)", user="[a-z]+")
    def ticket(message):
        return None


    @support.hook("RCPT")
    def screen(server, session, envelope, address, options):
        return None


    @app.command("PING", syntax="PING [text]")
    def ping(server, arg):
        return "250 pong"


    @app.hook("MAIL")
    def first(server, session, envelope, address, options):
        return None


    @app.hook("MAIL")
    def second(server, session, envelope, address, options):
        return None


    @app.auth_mechanism("X-TOKEN")
    async def token(server, args):
        return AuthResult(success=False)


    @app.authenticator(required=False)
    def check(server, session, envelope, mechanism, data):
        return AuthResult(success=False)


    @app.exception_handler(KeyError)
    def missing(error):
        return "550 unknown"


    @app.route("postmaster@shop.example")
    def postmaster(message):
        return None


    @app.route("(user)+(tag)@shop.example", user="[a-z]+", tag="[a-z0-9]+")
    def tagged(message):
        return None


    app.register_blueprint(support, domain="help.example")
    """
)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    write(tmp_path, "shop.py", SHOP)
    return tmp_path


def test_routes_lists_every_registration(shop: Path) -> None:
    result = run_once("routes", "shop", cwd=shop)
    assert result.returncode == 0, result.stderr
    assert result.stdout == textwrap.dedent(
        """\
        App 'shop' (shop)
        SMTP class: SMTP, compiled
        Extensions (default configuration): {extensions}

        Commands:
          PING  HELP: PING [text]  shop.ping (from the app)

        Hooks:
          MAIL  1.  shop.first (from the app)
                2.  shop.second (from the app)
          RCPT  1.  shop.screen (from blueprint 'support')

        AUTH mechanisms:
          LOGIN    built in
          PLAIN    built in
          X-TOKEN  shop.token (from the app)

        Authenticator:
          shop.check (from the app), AUTH optional

        Exception handlers:
          KeyError  shop.missing (from the app)

        Blueprints:
          support  Blueprint('support')

        Recipient routes (first match wins):
          1.  postmaster      postmaster@shop.example    shop.postmaster (from the app)
          2.  tagged          (user)+(tag)@shop.example  shop.tagged (from the app)
          3.  support.ticket  (user)@help.example        shop.ticket (from blueprint 'support')
        """
    ).format(
        extensions="SIZE 33554432, 8BITMIME, DSN, PIPELINING, ENHANCEDSTATUSCODES, CHUNKING, "
        "BINARYMIME, LIMITS RCPTMAX=1000"
    )


def test_routes_of_the_embedded_default(tmp_path: Path) -> None:
    result = run_once("routes", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == (
        "handler DefaultHandler (the embedded default), served with the SMTP class"
    )
    assert "Hooks: handle_DATA, handle_DATA_ABORT, handle_DATA_CHUNK, handle_PROXY" in result.stdout


@pytest.mark.parametrize(
    ("address", "status", "expected"),
    [
        (
            "<postmaster@SHOP.example>",
            0,
            "<postmaster@SHOP.example>: route 'postmaster' (pattern 'postmaster@shop.example', "
            "shop.postmaster (from the app))\n"
            "note: RCPT hooks run before the routes and may refuse it: shop.screen "
            "(from blueprint 'support')\n",
        ),
        (
            "ann+x1@shop.example",
            0,
            "<ann+x1@shop.example>: route 'tagged' (pattern '(user)+(tag)@shop.example', "
            "shop.tagged (from the app)); captures: user='ann', tag='x1'\n",
        ),
        (
            "bob@help.example",
            0,
            "<bob@help.example>: route 'support.ticket' (pattern '(user)@help.example', "
            "shop.ticket (from blueprint 'support')); captures: user='bob'\n",
        ),
        (
            "Bob@help.example",
            1,
            "<Bob@help.example>: no route matches; RCPT TO gets: 550 5.1.1 <Bob@help.example>: "
            "Recipient address rejected: no route\n"
            "tried, in order:\n"
            "  postmaster: 'postmaster@shop.example' - does not match\n"
            "  tagged: '(user)+(tag)@shop.example' - does not match\n"
            "  support.ticket: '(user)@help.example' - differs only in letter case: local parts "
            "are matched exactly as written\n",
        ),
        ("nobody", 1, "  postmaster: 'postmaster@shop.example' - the address has no domain\n"),
    ],
)
def test_check_says_which_route_or_why_none(
    shop: Path, address: str, status: int, expected: str
) -> None:
    result = run_once("check", "shop", "--rcpt", address, cwd=shop)
    assert result.returncode == status, result.stderr
    assert expected in result.stdout
    if status == 0:
        assert result.stdout.startswith(expected)


def test_check_several_addresses(shop: Path) -> None:
    result = run_once(
        "check", "shop", "--rcpt", "a@help.example", "--rcpt", "a@else.example", cwd=shop
    )
    assert result.returncode == 1
    assert result.stdout.startswith("<a@help.example>: route 'support.ticket'")
    assert "<a@else.example>: no route matches" in result.stdout


def test_check_an_app_without_routes_and_a_handler(tmp_path: Path) -> None:
    write(tmp_path, "bare.py", "from smtpkit import App\n\napp = App()\n")
    result = run_once("check", "bare", "--rcpt", "x@y.example", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (
        0,
        "<x@y.example>: accepted: the app has no recipient routes\n",
    )
    result = run_once("check", "--rcpt", "x@y.example", cwd=tmp_path)
    assert result.stdout == "<x@y.example>: accepted: the handler has no handle_RCPT hook\n"


def test_check_needs_an_address(shop: Path) -> None:
    result = run_once("check", "shop", cwd=shop)
    assert result.returncode == 2
    assert "the following arguments are required: --rcpt" in result.stderr


def test_passwd_is_mounted(tmp_path: Path) -> None:
    added = run_once(
        "passwd", "add-user", "users.txt", "ann", "--password-stdin", cwd=tmp_path, stdin="s3cret\n"
    )
    assert added.returncode == 0, added.stderr
    listed = run_once("passwd", "list", "users.txt", cwd=tmp_path)
    assert (listed.returncode, listed.stdout.split()) == (0, ["ann"])
    assert "s3cret" not in (tmp_path / "users.txt").read_text()
    usage = run_once("passwd", "--help", cwd=tmp_path)
    assert usage.stdout.startswith("usage: smtpkit passwd")


def test_routes_marks_a_route_that_can_never_match(tmp_path: Path) -> None:
    write(
        tmp_path,
        "twice.py",
        textwrap.dedent(
            """
            from smtpkit import App

            app = App(name="twice")


            @app.route("(user)@example.com")
            def inbox(message):
                return None


            @app.route("(who)@EXAMPLE.com")
            def again(message):
                return None
            """
        ),
    )
    result = run_once("routes", "twice", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-3:] == [
        "Recipient routes (first match wins):",
        "  1.  inbox  (user)@example.com  twice.inbox (from the app)",
        "  2.  again  (who)@EXAMPLE.com   twice.again (from the app)  (never matches: route "
        "'inbox' has the same pattern and comes first)",
    ]
    assert (
        "route 'again' (pattern '(who)@EXAMPLE.com', twice.again (from the app)) can never "
        "match: route 'inbox' (twice.inbox (from the app)) has the same pattern and comes first"
    ) in result.stderr


def test_routes_into_a_reader_that_stops_early_exits_quietly(tmp_path: Path) -> None:
    # Far more output than a pipe holds, so the writes after the reader left must fail.
    routes = "".join(
        f"@app.route('user{n}@example.com')\ndef route{n}(message):\n    return None\n\n"
        for n in range(3000)
    )
    write(tmp_path, "many.py", f"from smtpkit import App\n\napp = App()\n\n{routes}")
    process = subprocess.Popen(
        smtpkit("routes", "many"),
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == b"App 'app' (many)\n"
    process.stdout.close()  # as `smtpkit routes many | head -1` does
    errors = process.stderr.read()
    assert process.wait(EXIT) == 128 + signal.SIGPIPE
    assert errors == b""
