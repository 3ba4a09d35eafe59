"""CI smoke run of the fuzz targets (tests/fuzzing.py) with hypothesis: structured and raw inputs.

The long run is tests/fuzz_atheris.py (coverage-guided, millions of inputs).
"""

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzzing import decoder_target, event_seeds, events_target, nlmsg, procfs_target, seeds

SMOKE = settings(max_examples=4000, deadline=None, suppress_health_check=list(HealthCheck), database=None)

messages = st.lists(
    st.builds(
        nlmsg,
        st.sampled_from([20, 20, 20, 1, 2, 3, 4, 99]),
        st.sampled_from([2, 2, 0x12, 0]),
        st.binary(max_size=200),
        st.sampled_from([1, 1, 1, 2]),
    ),
    max_size=40,
).map(b"".join)


@SMOKE
@given(st.integers(0, 1000), messages)
def test_structured_replies(choice, data):
    decoder_target(choice, data)


@SMOKE
@given(st.integers(0, 1000), st.binary(max_size=2000))
def test_raw_bytes(choice, data):
    decoder_target(choice, data)


@SMOKE
@given(st.integers(0, 1000), st.sampled_from(seeds()), st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)),
                                                                 max_size=12), st.integers(0, 4096))
def test_mutated_valid_replies(choice, seed, edits, cut):
    data = bytearray(seed[: max(cut, 16)])
    for where, value in edits:
        if data:
            data[where % len(data)] = value
    decoder_target(choice, bytes(data))


@SMOKE
@given(st.integers(0, 1 << 14), messages)
def test_destroy_events_structured(choice, data):
    events_target(choice, data)


@SMOKE
@given(st.integers(0, 1 << 14), st.sampled_from(event_seeds()),
       st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=12), st.integers(0, 1000))
def test_destroy_events_mutated(choice, seed, edits, cut):
    """Kernel-shaped events with bytes changed and cut short: truncated INET_DIAG_INFO, bad lengths, other types."""
    data = bytearray(seed[: max(cut, 1)])
    for where, value in edits:
        data[where % len(data)] = value
    events_target(choice, bytes(data))


proc_lines = st.lists(st.one_of(
    st.text(max_size=120),
    st.builds(lambda n, st_, q: f"{n}: 0100007F:0001 00000000:0000 {st_} {q} 00:00000000 00000000 0 0 1 2 x 0",
              st.integers(0, 9), st.text("0123456789ABCDEFxyz", max_size=3), st.text("0123456789abcdef:", max_size=20)),
), max_size=20).map("\n".join)


@SMOKE
@given(st.integers(0, 2), proc_lines)
def test_proc_parsers(choice, text):
    procfs_target(choice, text)


def test_event_seeds_decode_as_connections():
    from sockdiag_exporter.diag.flows import FlowDecoder

    decoder = FlowDecoder()
    for seed in event_seeds():
        decoder.feed(memoryview(bytearray(seed)), 0, len(seed))
    tally = decoder.tally
    assert (tally.events, tally.malformed, sum(row[0] for _, row in tally.connections()), tally.udp) == (4, 0, 2, [2, 0])


def test_seeds_are_valid_replies():
    """The mutation seeds decode cleanly, so mutations start from deep inside the decoder."""
    for choice in range(60):
        for seed in seeds()[:2]:
            decoder_target(choice, seed)
    assert struct.unpack_from("=H", seeds()[0], 4)[0] == 20
