"""One blueprint, two apps: the role addresses of RFC 2142 on two servers.

The ``roles`` blueprint routes ``postmaster`` and ``abuse`` (patterns without
a domain) and adds an ``XROLES`` command listing them. The public MX registers
it for ``example.com``; the internal server registers it twice, for two
internal domains, under two names. Each app compiles its own SMTP class: the
blueprint only records what it wants, and each registration replays it.

Run the MX with ``python examples/shared_blueprint.py`` (port 8025) and the
internal server with ``python examples/shared_blueprint.py internal``.
"""

from __future__ import annotations

import sys

from smtpkit import SMTP, App, Blueprint, ServerConfig
from smtpkit.routing import RoutedMessage

ROLES = ("postmaster", "abuse")
#: (app name, route name, recipient, subject) of every report received.
REPORTS: list[tuple[str, str, str, str]] = []

roles = Blueprint("roles")


@roles.route("(role)", role="|".join(ROLES))
async def role_mailbox(message: RoutedMessage) -> str:
    server_name = message.server.hostname
    for address in message.recipients:
        REPORTS.append((server_name, message.route.name, address, message.message["Subject"]))
    return "250 2.0.0 Thank you, a person will read this"


@roles.command("XROLES", syntax="XROLES")
async def list_roles(server: SMTP, arg: str | None) -> None:
    await server.push("250 " + " ".join(ROLES))


mx = App(ServerConfig(hostname="mx.example.com"), name="mx")
mx.register_blueprint(roles, domain="example.com")

internal = App(ServerConfig(hostname="mail.corp.example"), name="internal")
internal.register_blueprint(roles, domain="corp.example")
internal.register_blueprint(roles, name="lab-roles", domain="lab.corp.example")

if __name__ == "__main__":
    (internal if sys.argv[1:] == ["internal"] else mx).run()
