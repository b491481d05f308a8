"""Tests for smtpkit.config: defaults, validation, loading, SMTP kwargs, redaction and TLS."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from smtpkit.config import (
    AuthConfig,
    ConfigError,
    ConfigTypeError,
    LimitsConfig,
    ListenConfig,
    ProxyProtocolConfig,
    ServerConfig,
    TLSConfig,
    WorkersConfig,
    config_fields,
    parse_setting,
)

# ------------------------------------------------------------------------------------------
# Defaults and dataclass shape
# ------------------------------------------------------------------------------------------

AGREED_DEFAULTS = {
    "hostname": None,
    "ident": None,
    "enable_smtputf8": False,
    "decode_data": False,
    "enhanced_status_codes": True,
    "chunking": True,
    "dsn": True,
    "received_header": True,
    "limits_extension": True,
    "requiretls": True,
    "xclient_trusted_networks": (),
    "xforward_trusted_networks": (),
    "loop": "asyncio",
    "log_level": "info",
    "log_format": "text",
    "maildir": "smtpkit-mail",
    "listen.host": "127.0.0.1",
    "listen.port": 8025,
    "listen.unix_socket": None,
    "listen.backlog": 100,
    "listen.reuse_port": False,
    "limits.data_size": 33_554_432,
    "limits.line_length": 1001,
    "limits.command_length": 512,
    "limits.local_part": 0,
    "limits.max_recipients": 1000,
    "limits.max_connections": 1000,
    "limits.max_connections_per_ip": 50,
    "limits.command_call_limit": None,
    "limits.timeout": 300,
    "limits.max_unknown_commands": 5,
    "limits.data_min_rate": 1024,
    "limits.data_rate_window": 30.0,
    "limits.max_auth_failures": 3,
    "limits.max_messages_per_session": 0,
    "tls.cert_file": None,
    "tls.key_file": None,
    "tls.key_password": None,
    "tls.implicit": False,
    "tls.require_starttls": False,
    "tls.handshake_timeout": 30.0,
    "tls.context": None,
    "auth.required": False,
    "auth.require_tls": True,
    "auth.exclude_mechanisms": (),
    "proxy_protocol.timeout": None,
    "proxy_protocol.trusted_networks": (),
    "workers.count": 1,
    "workers.graceful_timeout": 30.0,
    "rate_limits.window": 60.0,
    "rate_limits.connections": 0,
    "rate_limits.messages": 0,
    "rate_limits.recipients": 0,
    "rate_limits.store": None,
}


def get(config: Any, path: str) -> Any:
    for name in path.split("."):
        config = getattr(config, name)
    return config


def test_defaults_are_the_agreed_ones() -> None:
    config = ServerConfig()
    assert {path: get(config, path) for path in AGREED_DEFAULTS} == AGREED_DEFAULTS
    assert {path for path, *_ in config_fields()} == set(AGREED_DEFAULTS)


def test_config_fields_defaults_match_a_default_config() -> None:
    config = ServerConfig()
    for path, type_text, default, doc in config_fields():
        assert get(config, path) == default, path
        assert type_text and doc.endswith("."), path


@pytest.mark.parametrize(
    "section", [ServerConfig, ListenConfig, LimitsConfig, TLSConfig, AuthConfig, WorkersConfig]
)
def test_sections_are_frozen_keyword_only_and_slotted(section: type[Any]) -> None:
    instance = section()
    first = dataclasses.fields(section)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(instance, first, getattr(instance, first))
    with pytest.raises(TypeError):
        section(getattr(instance, first))
    assert not hasattr(instance, "__dict__")


def test_nested_sections_are_frozen_too() -> None:
    config = ServerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.limits.data_size = 1  # type: ignore[misc]


def test_values_are_normalised_and_not_shared_with_the_caller() -> None:
    table = {"RCPT": 30, "*": 3}
    limits = LimitsConfig(timeout=10, command_call_limit=table)
    table["RCPT"] = 1
    assert limits.timeout == 10.0 and isinstance(limits.timeout, float)
    assert limits.command_call_limit == {"RCPT": 30, "*": 3}
    auth = AuthConfig(exclude_mechanisms=["login", "Plain"])  # type: ignore[arg-type]
    assert auth.exclude_mechanisms == ("LOGIN", "PLAIN")
    assert ServerConfig(log_level="DEBUG").log_level == "debug"


# ------------------------------------------------------------------------------------------
# Validation messages
# ------------------------------------------------------------------------------------------

INVALID = [
    (ListenConfig, {"port": 70000}, "listen.port = 70000: expected a port number from 0 to 65535"),
    (ListenConfig, {"port": -1}, "listen.port = -1: expected a port number from 0 to 65535"),
    (ListenConfig, {"port": "25"}, "listen.port = '25': expected `int`, got `str`"),
    (ListenConfig, {"port": True}, "listen.port = True: expected `int`, got `bool`"),
    (ListenConfig, {"backlog": -5}, "listen.backlog = -5: expected an integer >= 0"),
    (ListenConfig, {"unix_socket": ""}, "listen.unix_socket = '': expected a socket path, or None"),
    (
        LimitsConfig,
        {"data_size": -1},
        "limits.data_size = -1: expected an integer >= 0 (0 = no limit)",
    ),
    (
        LimitsConfig,
        {"local_part": -1},
        "limits.local_part = -1: expected an integer >= 0 (0 = no limit)",
    ),
    (LimitsConfig, {"line_length": 0}, "limits.line_length = 0: expected an integer >= 1"),
    (LimitsConfig, {"command_length": 0}, "limits.command_length = 0: expected an integer >= 1"),
    (
        LimitsConfig,
        {"max_recipients": 99},
        "limits.max_recipients = 99: expected an integer >= 100 (RFC 5321 4.5.3.1.8",
    ),
    (
        LimitsConfig,
        {"max_connections": -1},
        "limits.max_connections = -1: expected an integer >= 1, or 0 for no limit",
    ),
    (
        LimitsConfig,
        {"max_connections_per_ip": -1},
        "limits.max_connections_per_ip = -1: expected an integer >= 1, or 0 for no limit",
    ),
    (LimitsConfig, {"timeout": 0}, "limits.timeout = 0.0: expected a number of seconds > 0"),
    (
        LimitsConfig,
        {"data_rate_window": -1.5},
        "limits.data_rate_window = -1.5: expected a number of seconds > 0",
    ),
    (
        LimitsConfig,
        {"max_unknown_commands": 0},
        "limits.max_unknown_commands = 0: expected an integer >= 1",
    ),
    (
        LimitsConfig,
        {"max_auth_failures": 0},
        "limits.max_auth_failures = 0: expected an integer >= 1",
    ),
    (
        LimitsConfig,
        {"command_call_limit": 0},
        "limits.command_call_limit = 0: expected an integer >= 1",
    ),
    (
        LimitsConfig,
        {"command_call_limit": {"RCPT": 0}},
        "limits.command_call_limit = {'RCPT': 0}: expected verbs (or '*') mapped to integers >= 1",
    ),
    (
        LimitsConfig,
        {"command_call_limit": {"RCPT": "5"}},
        "limits.command_call_limit = {'RCPT': '5'}: expected `int`, got `str` - at "
        "`$.limits.command_call_limit[...]`",
    ),
    (
        TLSConfig,
        {"key_file": "key.pem"},
        "tls.key_file = 'key.pem': expected tls.cert_file to be set as well",
    ),
    (
        TLSConfig,
        {"key_password": "hunter2"},
        "tls.key_password = '***': expected tls.cert_file to be set",
    ),
    (
        TLSConfig,
        {"implicit": True},
        "tls.implicit = True: expected tls.cert_file to be set (implicit TLS needs a certificate)",
    ),
    (
        TLSConfig,
        {"implicit": True, "require_starttls": True, "cert_file": "c.pem"},
        "tls.require_starttls = True: expected False with tls.implicit",
    ),
    (
        TLSConfig,
        {"handshake_timeout": 0},
        "tls.handshake_timeout = 0.0: expected a number of seconds > 0",
    ),
    (
        TLSConfig,
        {"context": "not a context"},
        "tls.context = 'not a context': expected `SSLContext`, got `str`",
    ),
    (
        AuthConfig,
        {"exclude_mechanisms": ("LOGIN", "")},
        "auth.exclude_mechanisms = ('LOGIN', ''): expected mechanism names",
    ),
    (
        ProxyProtocolConfig,
        {"timeout": 0},
        "proxy_protocol.timeout = 0.0: expected seconds > 0, or None (off)",
    ),
    (
        ProxyProtocolConfig,
        {"trusted_networks": ("10.0.0.0/8", "10.0.0.1/8")},
        "proxy_protocol.trusted_networks = ('10.0.0.0/8', '10.0.0.1/8'): expected CIDR networks "
        "such as '10.0.0.0/8' or '2001:db8::/32' (10.0.0.1/8 has host bits set)",
    ),
    (
        ProxyProtocolConfig,
        {"trusted_networks": ("lan",)},
        "proxy_protocol.trusted_networks = ('lan',): expected CIDR networks",
    ),
    (WorkersConfig, {"count": 0}, "workers.count = 0: expected an integer >= 1"),
    (
        WorkersConfig,
        {"graceful_timeout": 0},
        "workers.graceful_timeout = 0.0: expected a number of seconds > 0",
    ),
    (
        ServerConfig,
        {"log_level": "loud"},
        "log_level = 'loud': expected one of critical, error, warning, info, debug",
    ),
    (
        ServerConfig,
        {"loop": "trio"},
        "loop = 'trio': expected one of 'asyncio', 'uvloop'",
    ),
    (ServerConfig, {"hostname": ""}, "hostname = '': expected a non-empty string, or None"),
    (ServerConfig, {"listen": {"port": 25}}, "listen = {'port': 25}: expected a ListenConfig"),
]


@pytest.mark.parametrize(("section", "kwargs", "message"), INVALID)
def test_invalid_values_are_rejected_naming_path_value_and_expectation(
    section: type[Any], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(message)) as info:
        section(**kwargs)
    assert info.value.path is not None and info.value.path in message


def test_wrong_types_are_type_errors_as_smtp_documents() -> None:
    with pytest.raises(TypeError, match="command_call_limit"):
        ServerConfig.from_smtp_kwargs(command_call_limit={"RCPT": 2.5})
    with pytest.raises(ConfigTypeError):
        ServerConfig.from_smtp_kwargs(command_call_limit="10")


def test_valid_edge_values_are_accepted() -> None:
    assert ListenConfig(port=0).port == 0
    assert ListenConfig(port=65535).port == 65535
    assert LimitsConfig(max_recipients=100, data_size=0).max_recipients == 100
    assert LimitsConfig(max_connections=None).max_connections is None
    no_caps = LimitsConfig(max_connections=0, max_connections_per_ip=0)  # TOML has no null
    assert (no_caps.max_connections, no_caps.max_connections_per_ip) == (None, None)
    limits = LimitsConfig(command_call_limit={"RCPT": 30, "*": 3})
    assert limits.command_call_limit == {"RCPT": 30, "*": 3}
    tls = TLSConfig(cert_file="combined.pem")  # a key inside the certificate file is allowed
    assert tls.key_file is None
    networks = ("10.0.0.0/8", "2001:db8::/32", "192.0.2.7")
    assert ProxyProtocolConfig(timeout=5, trusted_networks=networks).trusted_networks == networks


# ------------------------------------------------------------------------------------------
# replace()
# ------------------------------------------------------------------------------------------


def test_replace_accepts_names_and_dotted_paths() -> None:
    config = ServerConfig().replace(
        hostname="mx.example.org", **{"limits.data_size": 10, "tls.handshake_timeout": 5}
    )
    assert config.hostname == "mx.example.org"
    assert config.limits.data_size == 10
    assert config.tls.handshake_timeout == 5.0
    assert config.limits.max_recipients == 1000
    assert ServerConfig().limits.data_size == 33_554_432


def test_replace_combines_a_whole_section_with_dotted_changes() -> None:
    changes = {"limits": LimitsConfig(timeout=9), "limits.data_size": 7}
    config = ServerConfig().replace(**changes)
    assert (config.limits.timeout, config.limits.data_size) == (9.0, 7)


def test_replace_validates_the_result() -> None:
    with pytest.raises(ConfigError, match=r"^limits\.max_recipients = 5: expected"):
        ServerConfig().replace(**{"limits.max_recipients": 5})


def test_replace_rejects_unknown_names_with_a_suggestion() -> None:
    with pytest.raises(
        ConfigError, match=r"^limits\.data_sise: unknown setting; did you mean `limits\.data_size`"
    ):
        ServerConfig().replace(**{"limits.data_sise": 1})
    with pytest.raises(ConfigError, match=r"^hostnme: unknown setting; did you mean `hostname`"):
        ServerConfig().replace(hostnme="x")
    with pytest.raises(ConfigError, match=r"^hostname: not a section"):
        ServerConfig().replace(**{"hostname.x": 1})


# ------------------------------------------------------------------------------------------
# Loading: TOML file, environment, overrides
# ------------------------------------------------------------------------------------------

FULL_TOML = """
hostname = "mx.example.org"
log_level = "DEBUG"
enable_smtputf8 = true

[listen]
host = "0.0.0.0"
port = 2525

[limits]
data_size = 10_485_760
timeout = 60
command_call_limit = { RCPT = 200, "*" = 20 }

[auth]
exclude_mechanisms = ["LOGIN"]

[proxy_protocol]
timeout = 5
trusted_networks = ["10.0.0.0/8"]

[workers]
count = 4
"""


def write(tmp_path: Path, text: str, name: str = "smtpkit.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_reads_a_toml_file(tmp_path: Path) -> None:
    config = ServerConfig.load(write(tmp_path, FULL_TOML), env={})
    assert config.hostname == "mx.example.org"
    assert config.log_level == "debug"
    assert config.enable_smtputf8 is True
    assert (config.listen.host, config.listen.port) == ("0.0.0.0", 2525)
    assert config.limits.data_size == 10_485_760
    assert config.limits.timeout == 60.0
    assert config.limits.command_call_limit == {"RCPT": 200, "*": 20}
    assert config.limits.max_recipients == 1000
    assert config.auth.exclude_mechanisms == ("LOGIN",)
    assert config.proxy_protocol.trusted_networks == ("10.0.0.0/8",)
    assert config.workers.count == 4


def test_load_without_a_file_gives_defaults(tmp_path: Path) -> None:
    assert ServerConfig.load(env={}) == ServerConfig()


def test_wrong_type_in_the_file_names_file_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, '[limits]\ndata_size = "10"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        ServerConfig.load("smtpkit.toml", env={})
    assert str(info.value) == "smtpkit.toml: Expected `int`, got `str` - at `$.limits.data_size`"
    assert info.value.path == "limits.data_size"


def test_out_of_range_value_in_the_file_names_file_path_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, "[listen]\nport = 70000\n")
    with pytest.raises(ConfigError) as info:
        ServerConfig.load(path, env={})
    assert str(info.value) == f"{path}: listen.port = 70000: expected a port number from 0 to 65535"


def test_a_section_that_is_not_a_table_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "limits = 5\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: Expected `object`, got `int`")):
        ServerConfig.load(path, env={})


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[limits]\ndata_sise = 1\n",
            "unknown key 'data_sise' - at `$.limits.data_sise`; did you mean `limits.data_size`?",
        ),
        ("hostnam = 'x'\n", "unknown key 'hostnam' - at `$.hostnam`; did you mean `hostname`?"),
        ("[limit]\ndata_size = 1\n", "unknown key 'limit' - at `$.limit`; did you mean `limits`?"),
        (
            "[limits]\nport = 25\n",
            "unknown key 'port' - at `$.limits.port`; did you mean `listen.port`?",
        ),
        ("[tls]\ncontext = 'x'\n", "tls.context can only be set from Python - at `$.tls.context`"),
        ("zzz = 1\n", "unknown key 'zzz' - at `$.zzz`"),
    ],
)
def test_unknown_keys_in_the_file_are_errors_with_a_suggestion(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        ServerConfig.load(path, env={})
    assert str(info.value) == f"{path}: {message}"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[listen]\nport = "25"\n', "Expected `int`, got `str` - at `$.listen.port`"),
        ("loop = 'uvlop'\n", "Invalid enum value 'uvlop' - at `$.loop`"),
        (
            "[limits]\ncommand_call_limit = { RCPT = 'many' }\n",
            "Expected `int`, got `str` - at `$.limits.command_call_limit[...]`",
        ),
        # A rule between settings of one section hides no type error in another.
        (
            "[tls]\nkey_file = 'key.pem'\n[listen]\nport = '25'\n",
            "Expected `int`, got `str` - at `$.listen.port`",
        ),
    ],
)
def test_a_wrong_type_in_the_file_is_an_error_even_when_overridden(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = write(tmp_path, toml)
    overrides = {"listen.port": 2525, "loop": "asyncio", "limits.command_call_limit": 5}
    for env, given in (({}, overrides), ({"SMTPKIT_LISTEN__PORT": "2525"}, {})):
        with pytest.raises(ConfigTypeError) as info:
            ServerConfig.load(path, env=env, overrides={**given, "tls.cert_file": "c.pem"})
        assert str(info.value) == f"{path}: {message}"


def test_a_later_source_may_complete_what_the_file_starts(tmp_path: Path) -> None:
    # Alone, the file breaks a rule (a key needs a certificate); the flag completes it.
    path = write(tmp_path, "[tls]\nkey_file = 'key.pem'\n")
    with pytest.raises(ConfigError, match=re.escape("tls.key_file = 'key.pem': expected tls")):
        ServerConfig.load(path, env={})
    config = ServerConfig.load(path, env={}, overrides={"tls.cert_file": "cert.pem"})
    assert (config.tls.cert_file, config.tls.key_file) == ("cert.pem", "key.pem")


@pytest.mark.parametrize(
    "make",
    [
        lambda: ServerConfig().replace(hostnme="x"),
        lambda: ServerConfig().replace(**{"limits.data_sise": 1}),
        lambda: parse_setting("limits.data_sise", "1"),
        lambda: ServerConfig.load(env={"SMTPKIT_LISTN__PORT": "1"}),
        lambda: ServerConfig.from_smtp_kwargs(data_size_limt=1),
    ],
)
def test_a_suggestion_ends_the_message(make: Any) -> None:
    with pytest.raises((ConfigError, TypeError)) as info:
        make()
    message = str(info.value)
    assert re.search(r"; did you mean `[\w.]+`\?$", message), message
    assert message.count("did you mean") == 1


def test_unreadable_or_invalid_files_are_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(f"{missing}: cannot read the config file")):
        ServerConfig.load(missing, env={})
    broken = write(tmp_path, "[limits\n")
    with pytest.raises(ConfigError, match=re.escape(f"{broken}: not valid TOML")):
        ServerConfig.load(broken, env={})


def test_env_vars_override_the_file_and_are_converted(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_TOML)
    env = {
        "SMTPKIT_LIMITS__DATA_SIZE": "10",
        "SMTPKIT_LIMITS__TIMEOUT": "2.5",
        "SMTPKIT_LIMITS__MAX_CONNECTIONS": "none",
        "SMTPKIT_LIMITS__COMMAND_CALL_LIMIT": "RCPT=30, *=3",
        "SMTPKIT_ENABLE_SMTPUTF8": "false",
        "SMTPKIT_TLS__REQUIRE_STARTTLS": "true",
        "SMTPKIT_AUTH__EXCLUDE_MECHANISMS": "login, plain",
        "SMTPKIT_PROXY_PROTOCOL__TRUSTED_NETWORKS": "192.0.2.0/24,2001:db8::/32",
        "SMTPKIT_HOSTNAME": "env.example.org",
        "SMTPKIT_APP": "mymodule:app",
        "HOME": "/root",
    }
    config = ServerConfig.load(path, env=env)
    assert config.limits.data_size == 10
    assert config.limits.timeout == 2.5
    assert config.limits.max_connections is None
    assert config.limits.command_call_limit == {"RCPT": 30, "*": 3}
    assert config.enable_smtputf8 is False
    assert config.tls.require_starttls is True
    assert config.auth.exclude_mechanisms == ("LOGIN", "PLAIN")
    assert config.proxy_protocol.trusted_networks == ("192.0.2.0/24", "2001:db8::/32")
    assert config.hostname == "env.example.org"
    assert config.listen.port == 2525  # from the file, untouched by the environment


def test_env_int_call_limit_and_environ_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTPKIT_LIMITS__COMMAND_CALL_LIMIT", "12")
    monkeypatch.setenv("SMTPKIT_LISTEN__PORT", "2526")
    config = ServerConfig.load()
    assert config.limits.command_call_limit == 12
    assert config.listen.port == 2526


def test_smtpkit_config_names_the_file_when_no_path_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, "[listen]\nport = 2600\n", name="other.toml")
    assert ServerConfig.load(env={"SMTPKIT_CONFIG": str(path)}).listen.port == 2600
    explicit = write(tmp_path, "[listen]\nport = 2700\n")
    assert ServerConfig.load(explicit, env={"SMTPKIT_CONFIG": str(path)}).listen.port == 2700


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SMTPKIT_LIMITS__DATA_SIZE": "ten"},
            "SMTPKIT_LIMITS__DATA_SIZE: limits.data_size = 'ten': Expected `int`, got `str`"
            " - at `$.limits.data_size`",
        ),
        (
            {"SMTPKIT_TLS__IMPLICIT": "maybe"},
            "SMTPKIT_TLS__IMPLICIT: tls.implicit = 'maybe': Expected `bool`, got `str`",
        ),
        (
            {"SMTPKIT_LOOP": "trio"},
            "SMTPKIT_LOOP: loop = 'trio': expected one of 'asyncio', 'uvloop' - at `$.loop`",
        ),
        (
            {"SMTPKIT_LIMITS__DATA_SIZ": "1"},
            "SMTPKIT_LIMITS__DATA_SIZ: unknown environment variable; "
            "did you mean `SMTPKIT_LIMITS__DATA_SIZE`?",
        ),
        (
            {"SMTPKIT_LIMITS_DATA_SIZE": "1"},
            "SMTPKIT_LIMITS_DATA_SIZE: unknown environment variable; "
            "did you mean `SMTPKIT_LIMITS__DATA_SIZE`?",
        ),
        ({"SMTPKIT_CONFG": "x.toml"}, "did you mean `SMTPKIT_CONFIG`?"),
        ({"SMTPKIT_LIMITS": "1"}, "SMTPKIT_LIMITS: a section; set SMTPKIT_LIMITS__<NAME>"),
        (
            {"SMTPKIT_TLS__CONTEXT": "x"},
            "SMTPKIT_TLS__CONTEXT: tls.context: can only be set from Python",
        ),
        (
            {"SMTPKIT_LISTEN__PORT": "99999"},
            "SMTPKIT_LISTEN__PORT: listen.port = 99999: expected a port number from 0 to 65535",
        ),
    ],
)
def test_bad_env_vars_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        ServerConfig.load(env=env)


def test_secrets_stay_out_of_env_error_messages() -> None:
    env = {"SMTPKIT_TLS__KEY_PASSWORD": "hunter2"}
    with pytest.raises(ConfigError) as info:
        ServerConfig.load(env=env)
    assert "hunter2" not in str(info.value)
    assert str(info.value).startswith("SMTPKIT_TLS__KEY_PASSWORD: tls.key_password = '***'")


def test_precedence_is_overrides_then_env_then_file_then_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "[limits]\ndata_size = 1\ntimeout = 11\nmax_recipients = 101\n")
    env = {"SMTPKIT_LIMITS__DATA_SIZE": "2", "SMTPKIT_LIMITS__TIMEOUT": "22"}
    overrides = {"limits.data_size": 3}
    config = ServerConfig.load(path, env=env, overrides=overrides)
    assert config.limits.data_size == 3  # override beats env and file
    assert config.limits.timeout == 22.0  # env beats file
    assert config.limits.max_recipients == 101  # file beats default
    assert config.limits.line_length == 1001  # default


def test_overrides_accept_section_tables_and_python_only_values() -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    config = ServerConfig.load(
        env={"SMTPKIT_LIMITS__TIMEOUT": "5"},
        overrides={"limits": {"data_size": 4}, "tls.context": context},
    )
    assert config.limits.data_size == 4
    assert config.limits.timeout == 5.0  # a table override merges, it does not replace
    assert config.tls.context is context


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"limits.data_size": "10"},
            "override 'limits.data_size': Expected `int`, got `str` - at `$.limits.data_size`",
        ),
        (
            {"limits.data_sise": 10},
            "override 'limits.data_sise': unknown key 'data_sise' - at `$.limits.data_sise`; "
            "did you mean `limits.data_size`?",
        ),
        (
            {"limits": {"timeoutt": 1}},
            "override 'limits': unknown key 'timeoutt' - at `$.limits.timeoutt`; "
            "did you mean `limits.timeout`?",
        ),
        (
            {"workers.count": 0},
            "override 'workers.count': workers.count = 0: expected an integer >= 1",
        ),
    ],
)
def test_bad_overrides_name_the_override(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServerConfig.load(env={}, overrides=overrides)
    assert str(info.value) == message


def test_cross_field_errors_name_the_source_of_the_setting(tmp_path: Path) -> None:
    path = write(tmp_path, "[tls]\nkey_file = 'k.pem'\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: tls.key_file = 'k.pem': expected")):
        ServerConfig.load(path, env={})
    # The certificate from the environment completes the file's key: no error.
    env = {"SMTPKIT_TLS__CERT_FILE": "c.pem"}
    assert ServerConfig.load(path, env=env).tls.cert_file == "c.pem"


def test_parse_setting_converts_text_for_the_cli() -> None:
    assert parse_setting("listen.port", " 25 ") == 25
    assert parse_setting("listen.reuse_port", "TRUE") is True
    assert parse_setting("hostname", "") is None
    assert parse_setting("tls.key_password", " pass word ") == " pass word "
    assert parse_setting("auth.exclude_mechanisms", "") == ()
    with pytest.raises(ConfigError, match=r"^listen\.prot: an unknown setting; did you mean"):
        parse_setting("listen.prot", "1")


# ------------------------------------------------------------------------------------------
# SMTP keyword arguments
# ------------------------------------------------------------------------------------------

SMTP_KWARGS = {
    "data_size_limit",
    "enable_SMTPUTF8",
    "decode_data",
    "enhanced_status_codes",
    "chunking",
    "dsn",
    "received_header",
    "limits_extension",
    "requiretls",
    "xclient_trusted_networks",
    "xforward_trusted_networks",
    "max_messages_per_session",
    "hostname",
    "ident",
    "tls_context",
    "require_starttls",
    "timeout",
    "auth_required",
    "auth_require_tls",
    "auth_exclude_mechanism",
    "command_call_limit",
    "proxy_protocol_timeout",
    "max_recipients",
    "max_unknown_commands",
    "max_auth_failures",
    "data_min_rate",
    "data_rate_window",
    "command_length_limit",
    "line_length_limit",
    "local_part_limit",
    "tls_handshake_timeout",
    "proxy_trusted_networks",
}


def test_to_smtp_kwargs_maps_every_setting() -> None:
    config = ServerConfig(
        hostname="mx",
        ident="kit",
        enable_smtputf8=True,
        decode_data=True,
        enhanced_status_codes=False,
        dsn=False,
        limits=LimitsConfig(
            data_size=5000,
            timeout=7,
            command_call_limit={"RCPT": 200},
            max_recipients=150,
            max_unknown_commands=2,
            max_auth_failures=4,
            data_min_rate=10,
            data_rate_window=3,
            command_length=600,
            line_length=2000,
            local_part=64,
        ),
        tls=TLSConfig(require_starttls=True, handshake_timeout=9),
        auth=AuthConfig(required=True, require_tls=False, exclude_mechanisms=("LOGIN",)),
        proxy_protocol=ProxyProtocolConfig(timeout=4, trusted_networks=("10.0.0.0/8",)),
    )
    kwargs = config.to_smtp_kwargs()
    assert set(kwargs) == SMTP_KWARGS
    assert kwargs == {
        "data_size_limit": 5000,
        "enable_SMTPUTF8": True,
        "decode_data": True,
        "enhanced_status_codes": False,
        "chunking": True,
        "dsn": False,
        "received_header": True,
        "limits_extension": True,
        "requiretls": True,
        "xclient_trusted_networks": (),
        "xforward_trusted_networks": (),
        "max_messages_per_session": 0,
        "hostname": "mx",
        "ident": "kit",
        "tls_context": None,
        "require_starttls": True,
        "timeout": 7.0,
        "auth_required": True,
        "auth_require_tls": False,
        "auth_exclude_mechanism": ("LOGIN",),
        "command_call_limit": {"RCPT": 200},
        "proxy_protocol_timeout": 4.0,
        "max_recipients": 150,
        "max_unknown_commands": 2,
        "max_auth_failures": 4,
        "data_min_rate": 10,
        "data_rate_window": 3.0,
        "command_length_limit": 600,
        "line_length_limit": 2000,
        "local_part_limit": 64,
        "tls_handshake_timeout": 9.0,
        "proxy_trusted_networks": ("10.0.0.0/8",),
    }
    kwargs["command_call_limit"]["RCPT"] = 1
    assert config.limits.command_call_limit == {"RCPT": 200}


def test_smtp_kwargs_round_trip() -> None:
    config = ServerConfig(
        hostname="mx",
        limits=LimitsConfig(data_size=0, timeout=1.5, command_call_limit=10, local_part=64),
        auth=AuthConfig(exclude_mechanisms=("PLAIN",)),
        proxy_protocol=ProxyProtocolConfig(timeout=3),
    )
    kwargs = config.to_smtp_kwargs()
    again = ServerConfig.from_smtp_kwargs(**kwargs)
    assert again == config
    assert again.to_smtp_kwargs() == kwargs


def test_from_smtp_kwargs_takes_the_documented_spellings() -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    config = ServerConfig.from_smtp_kwargs(
        handler=object(),
        loop=None,
        authenticator=lambda *args: None,
        auth_callback=None,
        data_size_limit=None,
        auth_exclude_mechanism=["login"],
        tls_context=context,
        command_call_limit={"RCPT": 30, "*": 3},
        enable_SMTPUTF8=True,
    )
    assert config.limits.data_size == 0
    assert config.auth.exclude_mechanisms == ("LOGIN",)
    assert config.tls.context is context
    assert config.to_smtp_kwargs()["tls_context"] is context
    assert config.limits.command_call_limit == {"RCPT": 30, "*": 3}
    assert config.enable_smtputf8 is True
    assert ServerConfig.from_smtp_kwargs(auth_exclude_mechanism=None) == ServerConfig()


def test_from_smtp_kwargs_rejects_unknown_arguments() -> None:
    with pytest.raises(TypeError, match="'data_size_limt'; did you mean `data_size_limit`"):
        ServerConfig.from_smtp_kwargs(data_size_limt=10)


def test_context_and_certificate_files_are_exclusive() -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with pytest.raises(ConfigError, match=r"^tls\.context = <ssl\.SSLContext.*: expected None"):
        TLSConfig(context=context, cert_file="c.pem")


# ------------------------------------------------------------------------------------------
# repr redaction
# ------------------------------------------------------------------------------------------


def test_repr_hides_secrets() -> None:
    config = ServerConfig(tls=TLSConfig(cert_file="c.pem", key_password="hunter2"))
    text = repr(config)
    assert "hunter2" not in text
    assert "key_password='***'" in text
    assert "cert_file='c.pem'" in text
    assert text.startswith("ServerConfig(hostname=None,")
    assert "key_password=None" in repr(TLSConfig())


def test_type_errors_hide_secrets() -> None:
    with pytest.raises(ConfigError) as info:
        TLSConfig(cert_file="c.pem", key_password=12345)  # type: ignore[arg-type]
    assert "12345" not in str(info.value)
    assert str(info.value).startswith("tls.key_password = '***': expected `str | null`")


# ------------------------------------------------------------------------------------------
# TLS contexts, with real certificates and a real handshake over loopback
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1")


@pytest.fixture
def cert_files(tmp_path: Path, server_cert: trustme.LeafCert) -> tuple[str, str]:
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in server_cert.cert_chain_pems))
    server_cert.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def encrypted_key(server_cert: trustme.LeafCert, path: Path, password: bytes) -> str:
    key = serialization.load_pem_private_key(server_cert.private_key_pem.bytes(), None)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )
    )
    return str(path)


async def handshake(server_context: ssl.SSLContext, ca: trustme.CA) -> tuple[bytes, str]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
        )
        writer.write(b"EHLO over TLS\r\n")
        line = await asyncio.wait_for(reader.readline(), 10)
        version = writer.get_extra_info("ssl_object").version()
        writer.close()
        await writer.wait_closed()
    return line, version


def test_server_context_completes_a_real_handshake(
    cert_files: tuple[str, str], ca: trustme.CA
) -> None:
    cert, key = cert_files
    context = TLSConfig(cert_file=cert, key_file=key).server_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    line, version = asyncio.run(handshake(context, ca))
    assert line == b"EHLO over TLS\r\n"
    assert version in ("TLSv1.2", "TLSv1.3")


def test_server_context_accepts_a_combined_pem_and_an_encrypted_key(
    tmp_path: Path, cert_files: tuple[str, str], server_cert: trustme.LeafCert, ca: trustme.CA
) -> None:
    cert, key = cert_files
    combined = tmp_path / "combined.pem"
    combined.write_bytes(Path(key).read_bytes() + Path(cert).read_bytes())
    assert isinstance(TLSConfig(cert_file=str(combined)).server_context(), ssl.SSLContext)
    locked = encrypted_key(server_cert, tmp_path / "locked.pem", b"s3cret")
    tls = TLSConfig(cert_file=cert, key_file=locked, key_password="s3cret")
    context = tls.server_context()
    assert context is not None
    assert asyncio.run(handshake(context, ca))[0] == b"EHLO over TLS\r\n"


def test_server_context_is_none_without_a_certificate() -> None:
    assert TLSConfig().server_context() is None
    assert ServerConfig().to_smtp_kwargs()["tls_context"] is None


def test_implicit_tls_leaves_tls_context_to_the_socket(cert_files: tuple[str, str]) -> None:
    cert, key = cert_files
    starttls = ServerConfig(tls=TLSConfig(cert_file=cert, key_file=key))
    assert isinstance(starttls.to_smtp_kwargs()["tls_context"], ssl.SSLContext)
    implicit = starttls.replace(**{"tls.implicit": True})
    assert implicit.to_smtp_kwargs()["tls_context"] is None
    assert isinstance(implicit.tls.server_context(), ssl.SSLContext)


def test_missing_files_name_the_field(tmp_path: Path, cert_files: tuple[str, str]) -> None:
    cert, _ = cert_files
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ConfigError) as info:
        TLSConfig(cert_file=missing).server_context()
    assert str(info.value).startswith(f"tls.cert_file = {missing!r}: cannot read the file (")
    assert info.value.path == "tls.cert_file"
    with pytest.raises(ConfigError, match=r"^tls\.key_file = .*: cannot read the file"):
        TLSConfig(cert_file=cert, key_file=missing).server_context()


def test_bad_key_material_is_a_config_error(
    tmp_path: Path, cert_files: tuple[str, str], server_cert: trustme.LeafCert, ca: trustme.CA
) -> None:
    cert, key = cert_files
    locked = encrypted_key(server_cert, tmp_path / "locked.pem", b"s3cret")
    with pytest.raises(ConfigError, match=r"^tls\.key_password = None: the private key is enc"):
        TLSConfig(cert_file=cert, key_file=locked).server_context()
    with pytest.raises(ConfigError, match=r"^tls\.cert_file = .*cannot load") as info:
        TLSConfig(cert_file=cert, key_file=locked, key_password="wrong").server_context()
    assert "wrong" not in str(info.value)
    other_key = tmp_path / "other.pem"
    ca.issue_cert("other.example").private_key_pem.write_to_path(str(other_key))
    with pytest.raises(ConfigError, match="cannot load the certificate and key"):
        TLSConfig(cert_file=cert, key_file=str(other_key)).server_context()
    with pytest.raises(ConfigError, match="cannot load the certificate and key"):
        TLSConfig(cert_file=key).server_context()  # a key is not a certificate
