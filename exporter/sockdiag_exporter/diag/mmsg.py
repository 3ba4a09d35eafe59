"""recvmmsg(2) through ctypes: several datagrams per system call, each into a buffer of its own, with the GIL
released for the whole call (the kernel makes a netlink dump's next datagram inside each receive)."""

import ctypes
import errno
import os
from typing import Sequence, Tuple

MSG_TRUNC = 0x20  # msg_len is the datagram's real length, even when it did not fit
MSG_DONTWAIT = 0x40


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32), ("msg_iov", ctypes.POINTER(_IoVec)),
                ("msg_iovlen", ctypes.c_size_t), ("msg_control", ctypes.c_void_p),
                ("msg_controllen", ctypes.c_size_t), ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_libc = ctypes.CDLL(None, use_errno=True)  # CDLL: the GIL is released during every call
_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
_recvmmsg.restype = ctypes.c_int


def address(buffer) -> int:
    """The address of a writable buffer (a bytearray, or a contiguous memoryview of one)."""
    return ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))


class Vector:
    """An mmsghdr vector receiving one datagram into each of its spans (address, size), in order.

    lengths: msg_len of every entry as one strided u32 column, read without a ctypes call per datagram."""

    def __init__(self, spans: Sequence[Tuple[int, int]]):
        self.count = count = len(spans)
        self._iov = (_IoVec * count)(*[_IoVec(base, size) for base, size in spans])
        raw = bytearray(count * ctypes.sizeof(_MMsgHdr))
        self._msgs = (_MMsgHdr * count).from_buffer(raw)
        for i in range(count):
            self._msgs[i].msg_hdr.msg_iov = ctypes.pointer(self._iov[i])
            self._msgs[i].msg_hdr.msg_iovlen = 1
        step = ctypes.sizeof(_MMsgHdr) // 4
        self.lengths = memoryview(raw).cast("I")[_MMsgHdr.msg_len.offset // 4 :: step]

    def receive(self, fd: int, flags: int = 0) -> int:
        """Datagrams received without waiting, up to count (0 if none was there); raises OSError."""
        while True:
            n = _recvmmsg(fd, self._msgs, self.count, flags | MSG_DONTWAIT, None)
            if n >= 0:
                return n
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EWOULDBLOCK):
                return 0
            if code != errno.EINTR:
                raise OSError(code, os.strerror(code))
