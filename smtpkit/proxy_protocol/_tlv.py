"""PROXY v2 TLVs: the CRC32C checksum and the TLV block decoder (`ProxyTLV`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from ._types import MalformedTLV, UnknownTypeTLV

# CRC32C (RFC 4960 appendix B: Castagnoli polynomial, reflected)


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for index in range(256):
        crc = index
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Compute the CRC32C (Castagnoli) checksum used by the v2 ``CRC32C`` TLV.

    Args:
        data: The bytes to checksum.
        crc: A previous result, to continue a checksum over several pieces.

    Returns:
        The checksum as an unsigned 32-bit integer.
    """
    table = _CRC32C_TABLE
    crc ^= 0xFFFFFFFF
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


_SSL_TYPE = 0x20
_CRC32C_TYPE = 0x03
# Sub-types that only make sense inside the SSL TLV, and types that only make
# sense outside it. Both share one flat namespace in ProxyTLV, so a misplaced
# one would silently overwrite a real value: we call it malformed instead.
_SSL_SUBTYPES = frozenset(range(0x21, 0x26))
_TOP_LEVEL_TYPES = frozenset({0x01, 0x02, 0x03, 0x04, 0x05, 0x20, 0x30})
_SSL_FIXED_LENGTH = 5  # uint8 client + uint32 verify, then sub-TLVs


class ProxyTLV(dict[str, Any]):
    """The TLVs of a v2 header, by name (``tlv["AUTHORITY"]`` or ``tlv.AUTHORITY``).

    Values are the raw ``bytes`` of each TLV. The ``SSL`` TLV is flattened: its
    sub-TLVs (``SSL_VERSION``, ``SSL_CN``, ``SSL_CIPHER``, ``SSL_SIG_ALG``,
    ``SSL_KEY_ALG``) sit next to the others, ``SSL_CLIENT`` and ``SSL_VERIFY``
    hold its two integer fields, and ``SSL`` itself is ``True`` (``False`` when
    its sub-TLVs were malformed and a partial parse was asked for). A type with
    no name in `PP2_TYPENAME` is stored as ``"xNN"`` (hex). Attribute access
    to a missing name gives ``None``.

    Attributes:
        tlv_loc: Offset of each TLV (its type byte), by name, from the start of
            the TLV block.
    """

    __slots__ = ("tlv_loc",)

    PP2_TYPENAME: ClassVar[dict[int, str]] = {
        0x01: "ALPN",
        0x02: "AUTHORITY",
        0x03: "CRC32C",
        0x04: "NOOP",
        0x05: "UNIQUE_ID",
        0x20: "SSL",
        0x21: "SSL_VERSION",
        0x22: "SSL_CN",
        0x23: "SSL_CIPHER",
        0x24: "SSL_SIG_ALG",
        0x25: "SSL_KEY_ALG",
        0x30: "NETNS",
    }
    """TLV type number to name (the spec's ``PP2_TYPE_``/``PP2_SUBTYPE_`` names, unprefixed)."""

    def __init__(self, *args: Any, _tlv_loc: dict[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tlv_loc: dict[str, int] = {} if _tlv_loc is None else _tlv_loc

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name)

    def same_attribs(self, _raises: bool = False, **kwargs: Any) -> bool:
        """Tell whether every named TLV is present with the given value.

        Args:
            _raises: Raise instead of returning ``False``.
            **kwargs: TLV names and their expected values.

        Returns:
            ``True`` when all match.

        Raises:
            KeyError: ``_raises`` is set and a name is missing.
            ValueError: ``_raises`` is set and a value differs.
        """
        return _same_attribs(self.get, _raises, kwargs)

    @classmethod
    def parse(
        cls,
        data: bytes | bytearray | memoryview,
        partial_ok: bool = True,
        strict: bool = False,
    ) -> tuple[dict[str, Any], dict[str, int]]:
        """Decode a block of TLVs.

        Args:
            data: The TLV block (what follows the v2 address block).
            partial_ok: On a malformed TLV, return what was decoded before it
                instead of raising.
            strict: Reject TLV types with no name in `PP2_TYPENAME`.

        Returns:
            The values by name, and the offset of each TLV by name.

        Raises:
            MalformedTLV: The block is malformed and ``partial_ok`` is false.
            UnknownTypeTLV: ``strict`` is set and a type is unknown.
        """
        values: dict[str, Any] = {}
        locations: dict[str, int] = {}
        try:
            _read_tlvs(bytes(data), 0, values, locations, strict=strict, in_ssl=False)
        except MalformedTLV:
            if not partial_ok:
                raise
        return values, locations

    @classmethod
    def from_raw(cls, raw: bytes | bytearray | memoryview, strict: bool = False) -> ProxyTLV | None:
        """Decode a whole TLV block into a `ProxyTLV`.

        Args:
            raw: The TLV block.
            strict: Reject TLV types with no name in `PP2_TYPENAME`.

        Returns:
            The TLVs, or ``None`` when ``raw`` is empty.

        Raises:
            MalformedTLV: The block is not well formed.
            UnknownTypeTLV: ``strict`` is set and a type is unknown.
        """
        if not raw:
            return None
        values, locations = cls.parse(raw, partial_ok=False, strict=strict)
        return cls(values, _tlv_loc=locations)

    @classmethod
    def name_to_num(cls, name: str) -> int | None:
        """Map a TLV name back to its type number.

        Args:
            name: A name from `PP2_TYPENAME`.

        Returns:
            The type number, or ``None`` for an unknown name.
        """
        return _TYPENUM.get(name)


_TYPENUM = {name: num for num, name in ProxyTLV.PP2_TYPENAME.items()}


def _type_label(tlv_type: int) -> str:
    name = ProxyTLV.PP2_TYPENAME.get(tlv_type)
    return f"0x{tlv_type:02X}" + (f" ({name})" if name else "")


def _read_tlvs(
    data: bytes,
    base: int,
    values: dict[str, Any],
    locations: dict[str, int],
    *,
    strict: bool,
    in_ssl: bool,
) -> None:
    """Decode ``data`` into ``values``; ``base`` is its offset in the whole block."""
    pos = 0
    while pos < len(data):
        if len(data) - pos < 3:
            raise MalformedTLV(
                f"TLV at offset {base + pos} is truncated: {len(data) - pos} byte(s) left,"
                " expected at least 3 (type and length)"
            )
        tlv_type = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 3], "big")
        end = pos + 3 + length
        if end > len(data):
            raise MalformedTLV(
                f"TLV {_type_label(tlv_type)} at offset {base + pos} declares {length} bytes,"
                f" expected at most {len(data) - pos - 3} (what is left of the block)"
            )
        name = _tlv_name(tlv_type, strict=strict, in_ssl=in_ssl, offset=base + pos)
        if tlv_type == _CRC32C_TYPE and name in values:
            raise MalformedTLV(f"TLV 0x03 (CRC32C) repeated at offset {base + pos}")
        locations[name] = base + pos
        value = data[pos + 3 : end]
        if tlv_type == _SSL_TYPE:
            _read_ssl(value, base + pos + 3, values, locations, strict=strict)
        else:
            values[name] = value
        pos = end


def _tlv_name(tlv_type: int, *, strict: bool, in_ssl: bool, offset: int) -> str:
    if in_ssl and tlv_type in _TOP_LEVEL_TYPES:
        raise MalformedTLV(
            f"TLV {_type_label(tlv_type)} at offset {offset} is inside the SSL TLV;"
            " expected only SSL sub-types there"
        )
    if not in_ssl and tlv_type in _SSL_SUBTYPES:
        raise MalformedTLV(
            f"TLV {_type_label(tlv_type)} at offset {offset} is outside the SSL TLV;"
            " expected it only inside SSL"
        )
    name = ProxyTLV.PP2_TYPENAME.get(tlv_type)
    if name is not None:
        return name
    if strict:
        raise UnknownTypeTLV(f"x{tlv_type:02X}")
    return f"x{tlv_type:02X}"


def _read_ssl(
    value: bytes,
    base: int,
    values: dict[str, Any],
    locations: dict[str, int],
    *,
    strict: bool,
) -> None:
    """Decode the SSL TLV value: client flags, verify result, then sub-TLVs."""
    if len(value) < _SSL_FIXED_LENGTH:
        raise MalformedTLV(
            f"SSL TLV value at offset {base} is {len(value)} bytes,"
            f" expected at least {_SSL_FIXED_LENGTH} (client flags and verify)"
        )
    values["SSL_CLIENT"] = value[0]
    values["SSL_VERIFY"] = int.from_bytes(value[1:5], "big")
    try:
        _read_tlvs(
            value[_SSL_FIXED_LENGTH:],
            base + _SSL_FIXED_LENGTH,
            values,
            locations,
            strict=strict,
            in_ssl=True,
        )
    except MalformedTLV:
        values["SSL"] = False
        raise
    values["SSL"] = True


_NOT_FOUND = object()


def _same_attribs(
    getter: Callable[[str, Any], Any], raises: bool, expected: dict[str, Any]
) -> bool:
    for key, want in expected.items():
        actual = getter(key, _NOT_FOUND)
        if actual is _NOT_FOUND:
            if raises:
                raise KeyError(f"notfound:{key}")
            return False
        if actual != want:
            if raises:
                raise ValueError(f"mismatch:{key} actual={actual!r} expect={want!r}")
            return False
    return True
