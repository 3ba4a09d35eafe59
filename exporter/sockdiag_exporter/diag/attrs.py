"""Netlink attributes (struct nlattr): type-length-value records after a message's fixed struct, 4-byte aligned."""

import struct

from . import constants as c
from .errors import DiagMalformed

_NLA = struct.Struct("=HH")  # nla_len, nla_type
_U32 = struct.Struct("=I")


def align4(n: int) -> int:
    return (n + 3) & ~3


def walk_attrs(buf, start: int, end: int) -> dict:
    """Attribute type -> (payload offset, payload length) for the attributes in buf[start:end]."""
    found = {}
    while end - start >= c.NLA_HDRLEN:
        alen, atype = _NLA.unpack_from(buf, start)
        if alen < c.NLA_HDRLEN or start + alen > end:
            raise DiagMalformed(f"attribute of length {alen} overruns its message")
        found[atype & c.NLA_TYPE_MASK] = (start + c.NLA_HDRLEN, alen - c.NLA_HDRLEN)
        start += align4(alen)
    return found


def attr_u32(buf, found: dict, atype: int, aoff: int) -> int:
    """The u32 at aoff in attribute atype; 0 when the attribute or that value is absent (older kernels)."""
    where = found.get(atype)
    if where is None:
        return 0
    start, size = where
    return _U32.unpack_from(buf, start + aoff)[0] if aoff + 4 <= size else 0
