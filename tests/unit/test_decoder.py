"""Decoder and netlink I/O edge cases with hand-built netlink byte strings (the real kernel is tested elsewhere;
random dumps against the reference decoder are in test_decoder_reference.py)."""

import errno
import random
import struct

import pytest

from sockdiag_exporter.diag import constants as c
from sockdiag_exporter.diag import requests
from sockdiag_exporter.diag.decoder import counting_decoder
from sockdiag_exporter.diag.tally import NO_DETAIL, Detail
from sockdiag_exporter.diag.errors import (DiagError, DiagInterrupted, DiagMalformed, DiagPermissionError,
                                           DiagUnsupported)
from sockdiag_exporter.diag.netlink import DiagSocket

SEQ = 7


def nlmsg(payload: bytes, mtype=c.SOCK_DIAG_BY_FAMILY, flags=c.NLM_F_MULTI, seq=SEQ) -> bytes:
    length = 16 + len(payload)
    return struct.pack("=IHHII", length, mtype, flags, seq, 0) + payload + bytes(-length % 4)


def attr(atype: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), atype) + payload + bytes(-len(payload) % 4)


def inet_msg(state, rq=0, wq=0, extra=b"", sport=0, dport=0, **kw) -> bytes:
    body = struct.pack("=BBBB", c.AF_INET, state, 0, 0) + struct.pack("!HH", sport, dport) + bytes(44)
    body += struct.pack("=IIIII", 0, rq, wq, 0, 0)
    return nlmsg(body + extra, **kw)


def unix_msg(sock_type, state, rq, wq, shutdown=True) -> bytes:
    body = struct.pack("=BBBBIII", c.AF_UNIX, sock_type, state, 0, 1, 0, 0)
    body += attr(c.UNIX_DIAG_RQLEN, struct.pack("=II", rq, wq))
    if shutdown:
        body += attr(6, b"\0")
    return nlmsg(body)


def done(err=0, seq=SEQ) -> bytes:
    return nlmsg(struct.pack("=i", err), mtype=c.NLMSG_DONE, flags=c.NLM_F_MULTI, seq=seq)


def error(err, seq=SEQ) -> bytes:
    return nlmsg(struct.pack("=i", err) + bytes(16), mtype=c.NLMSG_ERROR, flags=0, seq=seq)


def decode(data: bytes, layout=requests.INET_LAYOUT, detail=NO_DETAIL, full=False):
    """Feed data as one receive buffer; returns (rows, complete, interrupted), or the Tally itself if full."""
    buf = bytearray(len(data) + (-len(data) % 4) + 64)
    buf[: len(data)] = data
    mv = memoryview(buf)
    d = counting_decoder(layout, SEQ, "test dump", detail)
    complete = d.feed(mv, mv.cast("I"), len(data))
    if full:
        return d.tally
    return d.tally.rows, complete, d.interrupted


def test_counts_and_sums_by_state():
    data = inet_msg(1, 10, 20) + inet_msg(1, 5, 0) + inet_msg(10, 3, 128) + done()
    tally, complete, interrupted = decode(data)
    assert complete and not interrupted
    assert tally == {1: [2, 15, 20], 10: [1, 3, 128]}


def test_incomplete_buffer_asks_for_more():
    assert decode(inet_msg(1) * 3)[1] is False


@pytest.mark.parametrize("err,exc", [
    (-errno.ENOENT, DiagUnsupported), (-errno.EOPNOTSUPP, DiagUnsupported), (-errno.EINVAL, DiagUnsupported),
    (-errno.EPERM, DiagPermissionError), (-errno.EACCES, DiagPermissionError), (-errno.EIO, DiagError)])
def test_error_message_and_done_with_error(err, exc):
    with pytest.raises(exc):
        decode(error(err))
    with pytest.raises(exc):
        decode(inet_msg(1) + done(err))


def test_ack_is_not_an_error():
    assert decode(error(0) + inet_msg(1) + done())[0] == {1: [1, 0, 0]}


@pytest.mark.parametrize("data,needle", [
    (inet_msg(1)[:10], "truncated netlink header"),
    (inet_msg(1)[:40], "netlink message length"),
    (struct.pack("=IHHII", 8, 20, 2, SEQ, 0), "netlink message length 8"),
    (nlmsg(b"\0" * 20), "shorter than its 72-byte header"),
])
def test_malformed_messages_give_a_clear_error(data, needle):
    with pytest.raises(DiagMalformed, match=needle):
        decode(data)


def test_unknown_timer_is_malformed_not_an_index_error():
    """The struct path keeps slots for idiag_timer 0-4 (what tcp, mptcp, dccp, udp and raw send)."""
    body = struct.pack("=BBBB", c.AF_INET, 1, 9, 0) + bytes(68)
    with pytest.raises(DiagMalformed, match="idiag_timer out of range"):
        decode(nlmsg(body) + done())


def test_half_open_sockets_are_found_in_every_buffer_that_has_them():
    """The struct path reads local endpoints in a second walk of the buffers whose count of the state grew:
    a buffer without any is not walked again, one with a reply flagged DUMP_INTR is."""
    detail = Detail(local_state=c.TCP_SYN_RECV)
    d = counting_decoder(requests.INET_LAYOUT, SEQ, "test dump", detail)
    buffers = [inet_msg(1, sport=80) * 3, inet_msg(3, sport=80) + inet_msg(1, sport=443) + inet_msg(3, sport=443),
               inet_msg(3, sport=80, flags=c.NLM_F_MULTI | c.NLM_F_DUMP_INTR) + done()]
    for data in buffers:
        buf = bytearray(len(data) + 64)
        buf[: len(data)] = data
        mv = memoryview(buf)
        d.feed(mv, mv.cast("I"), len(data))
    assert {local.port: row[0] for local, row in d.tally.by_local()} == {80: 2, 443: 1}
    assert d.tally.rows == {1: [4, 0, 0], 3: [3, 0, 0]}


def test_attribute_overrun_is_malformed():
    body = struct.pack("=BBBBIII", c.AF_UNIX, 1, 1, 0, 1, 0, 0) + struct.pack("=HH", 200, c.UNIX_DIAG_RQLEN)
    with pytest.raises(DiagMalformed, match="overruns"):
        decode(nlmsg(body), requests.UNIX_LAYOUT)


def test_dump_intr_is_flagged():
    data = inet_msg(1) + inet_msg(1, flags=c.NLM_F_MULTI | c.NLM_F_DUMP_INTR) + done()
    assert decode(data)[2] is True


def test_stale_sequence_numbers_are_skipped():
    data = inet_msg(1, seq=SEQ - 1) + done(-errno.EIO, seq=SEQ - 1) + inet_msg(6) + done()
    assert decode(data)[0] == {6: [1, 0, 0]}


def test_missing_attribute_counts_zero_and_short_attribute_too():
    short = nlmsg(struct.pack("=BBBBIII", c.AF_UNIX, 1, 1, 0, 1, 0, 0) + attr(c.UNIX_DIAG_RQLEN, b"\1\0\0\0"))
    bare = nlmsg(struct.pack("=BBBBIII", c.AF_UNIX, 2, 7, 0, 1, 0, 0))
    tally = decode(short + bare + done(), requests.UNIX_LAYOUT)[0]
    assert tally == {c.AF_UNIX | 1 << 8 | 1 << 16: [1, 1, 0], c.AF_UNIX | 2 << 8 | 7 << 16: [1, 0, 0]}


def test_histogram_buckets_hold_exactly_their_values():
    data = b"".join(inet_msg(1, rq) for rq in (0, 1, 1024, 1025, 65536, 70000, 2 << 20)) + done()
    tally = decode(data, detail=Detail((0, 1024, 65536, 1 << 20)), full=True)
    assert tally.hist[1][0] == [1, 2, 2, 1, 1]  # le 0, 1024, 65536, 1 MiB, +Inf (not cumulative)
    assert tally.hist[1][1] == [7, 0, 0, 0, 0]


def test_random_corruption_raises_only_diag_errors():
    rng = random.Random(42)
    valid = b"".join(inet_msg(rng.choice([1, 6, 10]), rng.randrange(9999), extra=rng.choice([b"", attr(8, b"\0")]))
                     for _ in range(200)) + done()
    layouts = [requests.INET_LAYOUT, requests.UNIX_LAYOUT, requests.NETLINK_LAYOUT, requests.TIPC_LAYOUT]
    for _ in range(3000):
        data = bytearray(valid[: rng.randrange(len(valid) + 1)])
        for _ in range(rng.randrange(1, 8)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            decode(bytes(data), rng.choice(layouts))
        except DiagError:
            pass


class FakeSock:
    """Stands in for the netlink socket: replays scripted replies (bytes or an exception) per recv."""

    def __init__(self, script):
        self.script = list(script)
        self.sent = []

    def send(self, data):
        self.sent.append(data)
        return len(data)

    def recv_into(self, buf, size, flags):
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        item = item(struct.unpack_from("=I", self.sent[-1], 8)[0]) if callable(item) else item
        buf[: len(item)] = item
        return len(item)

    def close(self):
        pass


def scripted(*script, retries=2):
    fake = FakeSock(script)
    return DiagSocket(receive_buffer=65536, retries=retries, connect=lambda size, timeout: fake), fake


def reply(*parts):
    """A reply built for whatever sequence number the request carried."""
    return lambda seq: b"".join(p(seq) for p in parts)


def test_interrupted_dump_is_retried_then_reported():
    intr = reply(lambda s: inet_msg(1, flags=c.NLM_F_MULTI | c.NLM_F_DUMP_INTR, seq=s), lambda s: done(seq=s))
    ok = reply(lambda s: inet_msg(1, seq=s), lambda s: inet_msg(1, seq=s), lambda s: done(seq=s))
    diag, fake = scripted(intr, ok)
    assert diag.dump(requests.inet(2, 6), requests.INET_LAYOUT, "tcp").rows == {1: [2, 0, 0]}
    assert diag.stats.dumps == 2 and diag.stats.retries == 1
    diag, _ = scripted(intr, intr, intr)
    with pytest.raises(DiagInterrupted, match="3 times"):
        diag.dump(requests.inet(2, 6), requests.INET_LAYOUT, "tcp")


def test_enobufs_is_retried():
    ok = reply(lambda s: inet_msg(10, seq=s), lambda s: done(seq=s))
    diag, _ = scripted(OSError(errno.ENOBUFS, "No buffer space"), ok)
    assert diag.dump(requests.inet(2, 6), requests.INET_LAYOUT, "tcp").rows == {10: [1, 0, 0]}


def test_eperm_is_not_retried():
    diag, _ = scripted(OSError(errno.EPERM, "Operation not permitted"))
    with pytest.raises(DiagPermissionError):
        diag.dump(requests.inet(2, 6), requests.INET_LAYOUT, "tcp")
    assert diag.stats.dumps == 1


def test_timeout_becomes_a_retryable_error():
    import socket

    diag, _ = scripted(socket.timeout(), socket.timeout(), socket.timeout(), retries=2)
    with pytest.raises(DiagError, match="no reply from the kernel"):
        diag.dump(requests.inet(2, 6), requests.INET_LAYOUT, "tcp")


def test_an_out_of_range_error_code_is_a_diag_error():
    """Found by the fuzzer: NLMSG_ERROR carrying INT_MIN made os.strerror overflow."""
    with pytest.raises(DiagError, match="out of range"):
        decode(error(-2 ** 31))


def paired(timeout=0.2, retries=1):
    """A DiagSocket on one end of a datagram socketpair (a real socket: the batched path, recvmmsg), and the other
    end, which plays the kernel."""
    import socket

    ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.settimeout(timeout)
    return DiagSocket(timeout=timeout, retries=retries, pipelined=False, connect=lambda size, t: ours), kernel


def test_batched_receive_decodes_every_datagram_in_order():
    """More datagrams than one recvmmsg takes (RING): every one decoded once, in order, up to NLMSG_DONE."""
    from sockdiag_exporter.diag import netlink

    diag, kernel = paired()
    datagrams = [inet_msg(1, rq=i, seq=1) + inet_msg(8, seq=1) for i in range(2 * netlink.RING + 3)]
    for datagram in datagrams + [done(seq=1)]:
        kernel.send(datagram)
    tally = diag.dump(requests.inet(2, 6), requests.INET_LAYOUT, "tcp")
    assert tally.rows == {1: [len(datagrams), sum(range(len(datagrams))), 0], 8: [len(datagrams), 0, 0]}
    kernel.send(inet_msg(1, seq=2))  # a second dump on the same socket, its end in the same datagram
    kernel.send(inet_msg(1, seq=2) + done(seq=2))
    assert diag.dump(requests.inet(2, 6), requests.INET_LAYOUT, "tcp").rows == {1: [2, 0, 0]}


def test_batched_receive_times_out_when_the_dump_stops_coming():
    diag, kernel = paired(timeout=0.05, retries=0)  # (a retry would open a new socket)
    kernel.send(inet_msg(1, seq=1))  # and no NLMSG_DONE
    with pytest.raises(DiagError, match="no reply from the kernel within 0.05 s"):
        diag.dump(requests.inet(2, 6), requests.INET_LAYOUT, "tcp")
