"""Dumps answered without a kernel: from a recording of a real one, or from a table of sockets built from the
kernel's structs (families this kernel lacks). Both plug into DiagSocket(connect=...) and Context(proc=...)."""

import base64
import json
import struct
from typing import Callable, Dict, List

NLMSG_ERROR, NLMSG_DONE, SOCK_DIAG_BY_FAMILY = 2, 3, 20
SYSCTL = "sys/net/"  # recorded /proc/sys/net files are kept under this prefix, next to the /proc/net ones


def with_seq(buf: bytes, seq: int) -> bytes:
    """The buffer with every message's sequence number set to seq (a replay answers whatever seq was asked)."""
    out, off = bytearray(buf), 0
    while off + 16 <= len(out):
        length = struct.unpack_from("=I", out, off)[0]
        struct.pack_into("=I", out, off + 8, seq)
        off += max(16, (length + 3) & ~3)
    return bytes(out)


class ReplaySocket:
    """Stands in for the netlink socket: send() looks the request up, recv_into() hands out its reply buffers."""

    def __init__(self, answer: Callable[[bytes], List[bytes]]):
        self.answer = answer
        self.pending: List[bytes] = []

    def send(self, data: bytes) -> int:
        seq = struct.unpack_from("=I", data, 8)[0]
        self.pending = [with_seq(buf, seq) for buf in self.answer(bytes(data[16:]))]
        return len(data)

    def recv_into(self, buf, size, flags=0) -> int:
        data = self.pending.pop(0)
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        pass


class Proc:
    """/proc/net and /proc/sys/net files from a dict (name, or SYSCTL + name -> text); a missing one is what a
    kernel without it answers."""

    def __init__(self, files: Dict[str, str]):
        self.files = files

    def read(self, name: str) -> str:
        from sockdiag_exporter.diag.errors import from_errno

        if name not in self.files:
            raise from_errno(2, f"reading /proc/net/{name}")
        return self.files[name]

    def sysctl(self, name: str) -> str:
        return self.read(SYSCTL + name)


class Recording:
    """A recorded conversation: request payload -> reply buffers, and the /proc/net files read."""

    def __init__(self, dumps: Dict[bytes, List[bytes]], proc: Dict[str, str], kernel: str = ""):
        self.dumps, self.proc, self.kernel = dumps, proc, kernel

    def answer(self, request: bytes) -> List[bytes]:
        if request not in self.dumps:
            raise AssertionError(f"no recorded reply to request {request.hex()}: record again (tests/golden/record.py)")
        return self.dumps[request]

    def connect(self, receive_buffer=0, timeout=0.0) -> ReplaySocket:
        return ReplaySocket(self.answer)

    @classmethod
    def load(cls, path: str) -> "Recording":
        with open(path) as f:
            data = json.load(f)
        dumps = {bytes.fromhex(d["request"]): [base64.b64decode(r) for r in d["replies"]] for d in data["dumps"]}
        return cls(dumps, data["proc"], data.get("kernel", ""))

    def save(self, path: str) -> None:
        data = {"kernel": self.kernel, "proc": self.proc,
                "dumps": [{"request": req.hex(), "replies": [base64.b64encode(r).decode() for r in replies]}
                          for req, replies in self.dumps.items()]}
        with open(path, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
