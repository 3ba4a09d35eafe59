"""Where one kind of sock_diag reply keeps what a tally needs, and what its tally keys are made of.

A layout is read off the kernel's uapi struct of a reply (linux/inet_diag.h, unix_diag.h, ...): the tally key is one
byte or one native u32 word of the fixed struct (or, for TIPC, the low bytes of attributes), the summed values are
u32 fields of the struct or u32s inside attributes. Only this module knows how a key is packed: collectors get keys
back as named tuples from :meth:`Layout.split`.
"""

from collections import namedtuple
from typing import Optional, Sequence, Tuple


class Layout:
    """One reply kind: the fixed struct's size, the key, the summed values, and the key's named parts.

    header: size of the fixed struct after the netlink header; attributes follow it (4-byte aligned).
    key: (payload offset, width); width 1 reads a byte, width 4 an aligned native u32.
    parts: (name, shift, bits) of each meaningful part of the key, e.g. ("state", 16, 8) is bits 16-23.
    fields: payload offsets of u32 values summed per key.
    attrs: (attribute type, offset inside its payload) of u32 values summed per key, after the fields; a value
        missing from a message (no such attribute, or a shorter one: an older kernel) counts as 0.
    nest: attribute type whose payload holds the attributes (TIPC), else None.
    key_attrs: attribute types whose u32 values, low byte of each, form the key instead of ``key`` (TIPC): the
        first one is bits 0-7, the next bits 8-15.
    ports: payload offsets of the local and remote port (network byte order u16), for port groups (inet).

    By convention value 0 is the receive queue and value 1 the send queue; memory values follow.
    """

    __slots__ = ("header", "key", "parts", "fields", "attrs", "nest", "key_attrs", "ports", "Key")

    def __init__(self, header: int, parts: Sequence[Tuple[str, int, int]], key=(0, 1), fields=(), attrs=(),
                 nest: Optional[int] = None, key_attrs=(), ports=None):
        for off in tuple(fields) + (key[0] if key[1] == 4 else 0,):
            if off % 4:
                raise ValueError(f"u32 offset {off} is not aligned")
        self.header = header
        self.key = key
        self.parts = tuple(parts)
        self.fields = tuple(fields)
        self.attrs = tuple(attrs)
        self.nest = nest
        self.key_attrs = tuple(key_attrs)
        self.ports = ports
        self.Key = namedtuple("Key", [name for name, _, _ in self.parts])

    @property
    def nvalues(self) -> int:
        return len(self.fields) + len(self.attrs)

    @property
    def flat(self) -> bool:
        """Key and values at fixed places (no nesting, no key from attributes): runs can be read as columns."""
        return self.nest is None and not self.key_attrs

    def split(self, key: int):
        """The named parts of a tally key, e.g. Key(type=1, state=10) for a unix key."""
        return self.Key(*((key >> shift) & ((1 << bits) - 1) for _, shift, bits in self.parts))
