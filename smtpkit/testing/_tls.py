"""Certificates made on the fly for the test server, with trustme.

Each server gets its own throw-away certificate authority; nothing is written
to disk but the CA certificate (a public file), in the server's own temporary
folder, for clients that want a path rather than an :class:`ssl.SSLContext`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ServerCertificates", "make_certificates"]

#: The names the server certificate is valid for.
IDENTITIES = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class ServerCertificates:
    """A server context, a client context that trusts it, and the CA file.

    Attributes:
        server_context: for the server (STARTTLS or implicit TLS).
        client_context: for clients: trusts only this server's CA and checks
            the host name (``127.0.0.1`` or ``localhost``).
        ca_path: the CA certificate, PEM.
    """

    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    ca_path: Path


def _trustme() -> Any:
    try:
        import trustme
    except ImportError:
        raise RuntimeError(
            "the test server's tls= option makes its certificates with the trustme "
            "package, which is not installed: pip install trustme"
        ) from None
    return trustme


def make_certificates(folder: Path) -> ServerCertificates:
    """Make a CA and a server certificate for :data:`IDENTITIES`; write the CA to ``folder``.

    Raises:
        RuntimeError: trustme is not installed.
    """
    ca = _trustme().CA(organization_name="smtpkit test CA")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*IDENTITIES).configure_cert(server_context)
    client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_context)
    ca_path = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return ServerCertificates(server_context, client_context, ca_path)
