"""`ProxyData`: what a PROXY header said, decoded."""

from __future__ import annotations

import dataclasses
from typing import Any

from ._tlv import ProxyTLV, _same_attribs
from ._types import AF, PROTO, V2_CMD, EndpointAddress, MalformedTLV


@dataclasses.dataclass(slots=True, kw_only=True)
class ProxyData:
    """What a PROXY header said, already decoded.

    `parse_header` only returns valid instances; the ``error`` field exists
    for code that builds or checks instances itself. An instance is truthy
    exactly when it is `valid`.

    Attributes:
        version: 1 or 2; ``None`` when unknown.
        command: The v2 command; ``None`` for v1.
        family: The address family; v1 ``UNKNOWN`` is ``AF.UNSPEC``.
        protocol: The transport protocol; v1 ``TCP4``/``TCP6`` is ``PROTO.STREAM``.
        src_addr: The original client's address: ``IPv4Address``/``IPv6Address``,
            or ``str`` for ``AF.UNIX``. ``None`` for ``UNKNOWN``/``UNSPEC``/``LOCAL``.
        dst_addr: The address the client connected to on the proxy (same types).
        src_port: The original client's port (``AF.INET``/``AF.INET6`` only).
        dst_port: The proxy port the client connected to.
        rest: Header bytes not decoded above: v1, what follows ``UNKNOWN``
            (before CRLF); v2, the TLV block after the address block (the whole
            payload when the family or protocol is unspecified).
        whole_raw: The whole header exactly as received.
        tlv_start: Offset of the TLV block in ``whole_raw`` (v2 with TLVs only).
        error: Why the header is invalid; ``""`` when valid.
    """

    version: int | None = None
    command: V2_CMD | None = None
    family: AF | None = None
    protocol: PROTO | None = None
    src_addr: EndpointAddress | None = None
    dst_addr: EndpointAddress | None = None
    src_port: int | None = None
    dst_port: int | None = None
    rest: bytes = b""
    whole_raw: bytearray = dataclasses.field(default_factory=bytearray)
    tlv_start: int | None = None
    error: str = ""
    _tlv: ProxyTLV | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    @property
    def valid(self) -> bool:
        """``True`` when the header was recognised and no error was recorded."""
        return not self.error and self.version is not None and self.protocol is not None

    @property
    def tlv(self) -> ProxyTLV | None:
        """The v2 TLVs decoded from `rest`; ``None`` when there are none or they are malformed."""
        if self._tlv is None and self.rest and self.version != 1:
            try:
                self._tlv = ProxyTLV.from_raw(self.rest)
            except MalformedTLV:
                return None
        return self._tlv

    def with_error(self, error_msg: str) -> ProxyData:
        """Record an error, making the instance invalid.

        Args:
            error_msg: What is wrong.

        Returns:
            This instance.
        """
        self.error = error_msg
        return self

    def same_attribs(self, _raises: bool = False, **kwargs: Any) -> bool:
        """Tell whether every named attribute exists with the given value.

        Args:
            _raises: Raise instead of returning ``False``.
            **kwargs: Attribute names and their expected values.

        Returns:
            ``True`` when all match.

        Raises:
            KeyError: ``_raises`` is set and an attribute does not exist.
            ValueError: ``_raises`` is set and a value differs.
        """
        return _same_attribs(lambda key, default: getattr(self, key, default), _raises, kwargs)

    def __bool__(self) -> bool:
        return self.valid
