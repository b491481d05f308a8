"""Settings built once per (class, configuration): validation parity, cache, weakness.

The same bad value is refused the same way as an ``SMTP(...)`` keyword and as a
``ServerConfig`` field; connections with the same settings share one object; the
cache follows the keyword values, the class attributes and the configuration, and
lets go of classes nobody uses (an App compiles its class at run time).
"""

from __future__ import annotations

import asyncio
import gc
import smtplib
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import HOST, READ_TIMEOUT, ServerFactory

from smtpkit import App
from smtpkit.config import ConfigError, LimitsConfig, ServerConfig
from smtpkit.handlers import Sink
from smtpkit.smtp import SMTP


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


# -- The same rules for keywords and for the config ------------------------------------

# (SMTP keyword, ServerConfig path, a value both must refuse)
REFUSED = [
    ("data_rate_window", "limits.data_rate_window", -1),
    ("data_rate_window", "limits.data_rate_window", 0),
    ("tls_handshake_timeout", "tls.handshake_timeout", -5),
    ("line_length_limit", "limits.line_length", 0),
    ("max_unknown_commands", "limits.max_unknown_commands", 0),
    ("max_auth_failures", "limits.max_auth_failures", 0),
    ("command_size_limit", "limits.command_length", 0),
    ("local_part_limit", "limits.local_part", -1),
    ("data_min_rate", "limits.data_min_rate", -1),
    ("max_recipients", "limits.max_recipients", 99),
    ("timeout", "limits.timeout", 0),
    ("timeout", "limits.timeout", -5),
    ("data_size_limit", "limits.data_size", -1),
    ("proxy_protocol_timeout", "proxy_protocol.timeout", 0),
    ("command_call_limit", "limits.command_call_limit", 0),
    ("command_call_limit", "limits.command_call_limit", {"RCPT": 0}),
]


def expected_part(message: str) -> str:
    """What an error message says it expected (the config shows 0 as 0.0 for a float)."""
    assert ": expected " in message, message
    return message.split(": expected ", 1)[1]


@pytest.mark.parametrize(("keyword", "path", "value"), REFUSED)
def test_a_value_is_refused_alike_as_keyword_and_as_config(
    loop: asyncio.AbstractEventLoop, keyword: str, path: str, value: Any
) -> None:
    with pytest.raises(ConfigError) as by_config:
        ServerConfig().replace(**{path: value})
    with pytest.raises(ValueError) as by_keyword:
        SMTP(Sink(), loop=loop, **{keyword: value})
    assert str(by_keyword.value).startswith(f"{keyword} = {value!r}: expected ")
    assert expected_part(str(by_keyword.value)) == expected_part(str(by_config.value))


# (SMTP keyword, ServerConfig path, a value of the wrong type)
WRONG_TYPES = [
    ("max_recipients", "limits.max_recipients", 1000.5),
    ("line_length_limit", "limits.line_length", True),
    ("timeout", "limits.timeout", "300"),
    ("tls_handshake_timeout", "tls.handshake_timeout", "30"),
    ("data_size_limit", "limits.data_size", "1000"),
]


@pytest.mark.parametrize(("keyword", "path", "value"), WRONG_TYPES)
def test_a_wrong_type_is_a_type_error_both_ways(
    loop: asyncio.AbstractEventLoop, keyword: str, path: str, value: Any
) -> None:
    with pytest.raises(TypeError, match=path.replace(".", r"\.")):
        ServerConfig().replace(**{path: value})
    with pytest.raises(TypeError, match=f"^{keyword} = {value!r}: expected "):
        SMTP(Sink(), loop=loop, **{keyword: value})


# (SMTP keyword, ServerConfig path, the smallest value both accept, the attribute)
ACCEPTED = [
    ("data_rate_window", "limits.data_rate_window", 0.5, "data_rate_window"),
    ("tls_handshake_timeout", "tls.handshake_timeout", 0.1, "tls_handshake_timeout"),
    ("line_length_limit", "limits.line_length", 1, "line_length_limit"),
    ("max_unknown_commands", "limits.max_unknown_commands", 1, "max_unknown_commands"),
    ("max_recipients", "limits.max_recipients", 100, "max_recipients"),
    ("data_min_rate", "limits.data_min_rate", 0, "data_min_rate"),
    ("local_part_limit", "limits.local_part", 0, "local_part_limit"),
]


@pytest.mark.parametrize(("keyword", "path", "value", "attribute"), ACCEPTED)
def test_a_value_is_accepted_alike(
    loop: asyncio.AbstractEventLoop, keyword: str, path: str, value: Any, attribute: str
) -> None:
    config = ServerConfig().replace(**{path: value})
    assert getattr(SMTP(Sink(), loop=loop, **{keyword: value}), attribute) == value
    assert getattr(SMTP(Sink(), loop=loop, config=config), attribute) == value


def test_a_keyword_over_a_config_is_checked_too(loop: asyncio.AbstractEventLoop) -> None:
    with pytest.raises(ValueError, match=r"^line_length_limit = 0: expected an integer >= 1$"):
        SMTP(Sink(), loop=loop, config=ServerConfig(), line_length_limit=0)


def test_a_class_attribute_is_checked_like_a_keyword(loop: asyncio.AbstractEventLoop) -> None:
    class TooFewRecipients(SMTP):
        max_recipients = 10

    with pytest.raises(ValueError, match=r"^max_recipients = 10: expected an integer >= 100"):
        TooFewRecipients(Sink(), loop=loop)


def test_an_empty_mechanism_name_is_refused_alike(loop: asyncio.AbstractEventLoop) -> None:
    with pytest.raises(ConfigError) as by_config:
        ServerConfig().replace(**{"auth.exclude_mechanisms": ("",)})
    with pytest.raises(ValueError) as by_keyword:
        SMTP(Sink(), loop=loop, auth_exclude_mechanism=[""])
    assert expected_part(str(by_keyword.value)) == expected_part(str(by_config.value))


# -- One settings object per class and configuration -----------------------------------


def test_connections_with_the_same_keywords_share_their_settings(
    loop: asyncio.AbstractEventLoop,
) -> None:
    first = SMTP(Sink(), loop=loop, hostname="a.test", command_call_limit={"MAIL": 3})
    second = SMTP(Sink(), loop=loop, hostname="a.test", command_call_limit={"MAIL": 3})
    other = SMTP(Sink(), loop=loop, hostname="b.test", command_call_limit={"MAIL": 3})
    assert first._settings is second._settings
    assert other._settings is not first._settings
    assert (first.hostname, other.hostname) == ("a.test", "b.test")


def test_a_changed_dict_gives_new_settings(loop: asyncio.AbstractEventLoop) -> None:
    limits = {"MAIL": 3}
    before = SMTP(Sink(), loop=loop, command_call_limit=limits)
    limits["MAIL"] = 7
    after = SMTP(Sink(), loop=loop, command_call_limit=limits)
    assert before._settings.call_limits == {"*": 20, "MAIL": 3}
    assert after._settings.call_limits == {"*": 20, "MAIL": 7}


def test_an_equal_value_of_another_type_is_still_checked(
    loop: asyncio.AbstractEventLoop,
) -> None:
    SMTP(Sink(), loop=loop, data_size_limit=1)
    with pytest.raises(TypeError, match=r"data_size_limit = 1\.0"):
        SMTP(Sink(), loop=loop, data_size_limit=1.0)  # type: ignore[arg-type]


def test_a_patched_class_attribute_gives_new_settings(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Patched(SMTP):
        pass

    before = Patched(Sink(), loop=loop)
    monkeypatch.setattr(Patched, "command_size_limit", 600)
    after = Patched(Sink(), loop=loop)
    assert before.command_size_limits["MAIL"] == 512 + 26
    assert after.command_size_limits["MAIL"] == 600 + 26


def test_the_config_object_is_part_of_the_key(loop: asyncio.AbstractEventLoop) -> None:
    small = ServerConfig(limits=LimitsConfig(data_size=1000))
    big = ServerConfig(limits=LimitsConfig(data_size=2000))
    first, again = (SMTP(Sink(), loop=loop, config=small) for _ in range(2))
    other = SMTP(Sink(), loop=loop, config=big)
    assert first._settings is again._settings
    assert (first.data_size_limit, other.data_size_limit) == (1000, 2000)


def test_keywords_set_the_documented_attributes_of_the_instance_only(
    loop: asyncio.AbstractEventLoop,
) -> None:
    assert SMTP(Sink(), loop=loop, max_recipients=2000).max_recipients == 2000
    assert SMTP(Sink(), loop=loop).max_recipients == SMTP.max_recipients == 1000


def test_each_construction_gives_its_warnings(loop: asyncio.AbstractEventLoop) -> None:
    def callback(mechanism: str, login: bytes, password: bytes) -> bool:
        return False

    for _ in range(2):
        with pytest.warns(DeprecationWarning, match="auth_callback is deprecated"):
            SMTP(Sink(), loop=loop, auth_callback=callback)


def test_the_handler_class_decides_the_mechanisms(loop: asyncio.AbstractEventLoop) -> None:
    class WithXToken:
        async def auth_XTOKEN(self, server: SMTP, args: list[str]) -> Any:
            return None

    plain = SMTP(Sink(), loop=loop, auth_require_tls=False)
    extra = SMTP(WithXToken(), loop=loop, auth_require_tls=False)
    assert "XTOKEN" not in plain._auth_methods
    assert "XTOKEN" in extra._auth_methods


# -- The cache lets go of classes -------------------------------------------------------


def collected(ref: weakref.ref[Any]) -> bool:
    for _ in range(3):
        gc.collect()
    return ref() is None


def test_the_cache_does_not_keep_a_class_alive(loop: asyncio.AbstractEventLoop) -> None:
    class Temporary(SMTP):
        pass

    connection = Temporary(Sink(), loop=loop, hostname="temporary.test")
    assert connection._settings is Temporary(Sink(), loop=loop, hostname="temporary.test")._settings
    ref = weakref.ref(Temporary)
    del Temporary, connection
    assert collected(ref), gc.get_referrers(ref())


def test_a_compiled_app_class_is_collected_with_its_app(loop: asyncio.AbstractEventLoop) -> None:
    app = App(ServerConfig(hostname="app.test"))
    connection = app.protocol_factory()()
    ref = weakref.ref(type(connection))
    assert ref() is not SMTP
    del app, connection
    assert collected(ref)


# -- The App's factory builds the settings once ------------------------------------------


def test_the_app_factory_hands_one_settings_object_to_each_connection() -> None:
    async def main() -> tuple[Any, Any]:
        factory = App(ServerConfig(hostname="app.test")).protocol_factory()
        return factory(), factory()

    first, second = asyncio.run(main())
    assert first._settings is second._settings
    assert first.hostname == "app.test"
    assert first.session is None and first._transfer is None


def test_the_app_factory_calls_an_init_of_its_own() -> None:
    built: list[str] = []

    class Counting(SMTP):
        def __init__(self, handler: Any, **kwargs: Any) -> None:
            built.append("init")
            super().__init__(handler, **kwargs)

    async def main() -> tuple[Any, Any]:
        factory = App(ServerConfig(hostname="app.test"), server_class=Counting).protocol_factory()
        return factory(), factory()

    first, second = asyncio.run(main())
    assert built == ["init", "init"]
    assert first._settings is second._settings


def test_connections_of_an_app_share_settings_over_real_sockets(server: ServerFactory) -> None:
    config = ServerConfig(hostname="shared.test", limits=LimitsConfig(data_size=12345))
    running = server(factory=App(config).protocol_factory())
    for _ in range(2):
        with smtplib.SMTP(HOST, running.port, timeout=READ_TIMEOUT) as client:
            code, reply = client.ehlo("client.test")
            assert code == 250
            assert reply.splitlines()[0] == b"shared.test"
            assert client.esmtp_features["size"] == "12345"
    first, second = running.protocols
    assert first._settings is second._settings


def test_no_warning_is_given_per_connection_of_an_app() -> None:
    config = ServerConfig(hostname="app.test").replace(
        **{"auth.required": True, "auth.require_tls": False}
    )
    with pytest.warns(UserWarning, match="clear text"):
        factory = App(config).protocol_factory()

    async def main() -> None:
        factory()
        factory()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(main())


# -- Equal values of another type are keyed apart ---------------------------------------

# (keyword, a value the rules accept, an equal value of another type they refuse)
EQUAL_BUT_REFUSED = [
    ("enhanced_status_codes", True, 1),
    ("chunking", False, 0),
    ("dsn", True, 1.0),
    ("max_recipients", 1000, 1000.0),
    ("line_length_limit", 1, True),
    ("data_size_limit", 1, True),
    ("data_size_limit", 1, 1.0),
    ("timeout", 1, True),
    ("command_call_limit", 1, True),
    ("proxy_protocol_timeout", 5, 5 + 0j),
]


@pytest.mark.parametrize(("keyword", "accepted", "refused"), EQUAL_BUT_REFUSED)
def test_a_cached_value_does_not_let_an_equal_one_of_another_type_through(
    loop: asyncio.AbstractEventLoop, keyword: str, accepted: Any, refused: Any
) -> None:
    assert accepted == refused and hash(accepted) == hash(refused)
    SMTP(Sink(), loop=loop, **{keyword: accepted})
    with pytest.raises(TypeError, match=f"^{keyword} "):
        SMTP(Sink(), loop=loop, **{keyword: refused})


def test_a_value_of_another_type_in_a_table_is_still_checked(
    loop: asyncio.AbstractEventLoop,
) -> None:
    SMTP(Sink(), loop=loop, command_call_limit={"MAIL": 1})
    with pytest.raises(TypeError, match="command_call_limit values must be int"):
        SMTP(Sink(), loop=loop, command_call_limit={"MAIL": True})


@pytest.mark.parametrize("keyword", ["enable_SMTPUTF8", "decode_data", "auth_required"])
def test_a_switch_keeps_the_value_it_was_given(
    loop: asyncio.AbstractEventLoop, keyword: str
) -> None:
    attribute = {"decode_data": "_decode_data", "auth_required": "_auth_required"}.get(
        keyword, keyword
    )
    values = [True, 1, 1.0, True]
    built = [getattr(SMTP(Sink(), loop=loop, **{keyword: value}), attribute) for value in values]
    assert [type(value) for value in built] == [bool, int, float, bool]


# -- The greeting is filled once per settings object ------------------------------------


def test_connections_share_the_greeting_of_their_settings(
    loop: asyncio.AbstractEventLoop,
) -> None:
    first = SMTP(Sink(), loop=loop, hostname="greet.test", ident="Kit 1")
    second = SMTP(Sink(), loop=loop, hostname="greet.test", ident="Kit 1")
    assert first._settings.greeting is second._settings.greeting
    assert first._settings.greeting.format() == "220 greet.test Kit 1"


class _Written(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = b""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: Any) -> None:
        self.data += bytes(data)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("hostname", "ident", "greeting"),
    [
        (None, None, b"220 greet.test Kit 1\r\n"),
        ("changed.test", None, b"220 changed.test Kit 1\r\n"),
        (None, "Kit 2", b"220 greet.test Kit 2\r\n"),
    ],
)
def test_the_greeting_follows_a_name_changed_on_the_connection(
    hostname: str | None, ident: str | None, greeting: bytes
) -> None:
    async def main() -> bytes:
        server = SMTP(Sink(), hostname="greet.test", ident="Kit 1")
        if hostname is not None:
            server.hostname = hostname
        if ident is not None:
            server.__ident__ = ident
        transport = _Written()
        server.connection_made(transport)
        server.connection_lost(None)
        return transport.data

    assert asyncio.run(main()) == greeting
