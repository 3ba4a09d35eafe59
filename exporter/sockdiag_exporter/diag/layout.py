"""Where one kind of sock_diag reply keeps what a tally needs, and what its tally keys are made of.

A layout is read off the kernel's uapi struct of a reply (linux/inet_diag.h, unix_diag.h, ...): the tally key is one
byte or one native u32 word of the fixed struct (or, for TIPC, the low bytes of attributes), the summed values are
u32 fields of the struct or u32s inside attributes. Only this module knows how a key is packed: collectors get keys
back as named tuples from :meth:`Layout.split`.
"""

import struct
from collections import namedtuple
from typing import Optional, Sequence, Tuple

NLMSG_HDRLEN = 16  # struct nlmsghdr: a message's payload starts after it
REMOTE_KEY = 34  # bytes of a remote endpoint key: remote port, local address, remote address


def offsets_struct(items, head: bool = False) -> struct.Struct:
    """A Struct reading (payload offset, struct code) items of a message from the message's start; with head,
    nlmsg_len (u32) and nlmsg_type | nlmsg_flags << 16 | nlmsg_seq << 32 (u64) come first: one call reads all."""
    fmt, at = ("=IQ4x", 0) if head else ("=", -NLMSG_HDRLEN)
    for offset, code in sorted(items):
        fmt += f"{offset - at}x{code}" if offset > at else code
        at = offset + struct.calcsize("=" + code)
    return struct.Struct(fmt)


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
    addresses: payload offset of the local address, 16 bytes, followed by the remote one (inet_diag_sockid's src
        and dst), for endpoint tallies (inet).
    ifindex: payload offset of the u32 index of the device the socket is bound to (inet).
    timer: payload offset of the byte saying which timer runs (inet: idiag_timer); TIME_WAIT minisockets say 3.

    By convention value 0 is the receive queue and value 1 the send queue; memory values follow.
    """

    __slots__ = ("header", "key", "parts", "fields", "attrs", "nest", "key_attrs", "ports", "addresses", "ifindex",
                 "timer", "Key", "remote", "local")

    def __init__(self, header: int, parts: Sequence[Tuple[str, int, int]], key=(0, 1), fields=(), attrs=(),
                 nest: Optional[int] = None, key_attrs=(), ports=None, addresses=None, ifindex=None, timer=None):
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
        self.addresses = addresses
        self.ifindex = ifindex
        self.timer = timer
        self.Key = namedtuple("Key", [name for name, _, _ in self.parts])
        # The endpoint keys of a message, read from its start in one call each (inet): the bytes from the remote
        # port to the end of the remote address (remote port, local address, remote address: inet_diag_sockid keeps
        # them in a row), and (local port, local address, device index).
        self.remote = self.local = None
        if addresses is not None:
            if ports[1] + 2 != addresses:
                raise ValueError("the remote port must come right before the addresses")
            self.remote = offsets_struct([(ports[1], f"{REMOTE_KEY}s")])
            self.local = offsets_struct([(ports[0], "H"), (addresses, "16s"), (ifindex, "I")])

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
