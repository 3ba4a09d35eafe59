"""The /proc/net parsers on real files (tests/fixtures/proc): the values they read, not only that they parse."""

import os

import pytest

from golden.replay import Proc
from helpers import make_scraper, render, Exposition

from sockdiag_exporter.diag.errors import DiagMalformed
from sockdiag_exporter.diag.procfs import parse_inet_table, parse_pairs_table, parse_snmp6

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "proc")


def fixture(name: str) -> str:
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


def test_raw_tables_tally_sockets_by_state_with_their_queues():
    raw = parse_inet_table(fixture("raw"), "raw", (0, 1024, 4096))
    assert raw.rows == {1: [1, 0, 0], 7: [1, 0x680, 0]}  # connected; unconnected with a queued echo (1664 bytes)
    assert raw.hist[7] == [[0, 0, 1, 0], [1, 0, 0, 0]]  # 1664 bytes: above 1024, within 4096
    assert parse_inet_table(fixture("raw6"), "raw6").rows == {7: [1, 0, 0]}
    assert parse_inet_table(fixture("udplite"), "udplite").rows == {1: [1, 0, 0], 7: [1, 0x680, 0]}


def test_counter_tables_read_every_counter_by_name():
    snmp = parse_pairs_table(fixture("snmp"), "snmp")
    assert snmp["UdpRcvbufErrors"] == 17 and snmp["UdpInErrors"] == 19 and snmp["UdpLiteInErrors"] == 4
    assert snmp["IpInReceives"] == 4 and snmp["TcpMaxConn"] == -1 and snmp["UdpLiteOutDatagrams"] == 2
    netstat = parse_pairs_table(fixture("netstat"), "netstat")
    assert netstat["TcpExtListenOverflows"] == 11 and netstat["TcpExtListenDrops"] == 12
    assert netstat["IpExtInOctets"] == 230 and len(netstat) == 229
    snmp6 = parse_snmp6(fixture("snmp6"), "snmp6")
    assert snmp6["Udp6RcvbufErrors"] == 5 and snmp6["UdpLite6InErrors"] == 8 and len(snmp6) == 86


def test_the_netstat_collector_exports_each_counter_once():
    files = {name: fixture(name) for name in ("snmp", "snmp6", "netstat")}
    exposition = Exposition(render(make_scraper(collectors=["netstat"], proc=Proc(files))))
    rcvbuf = {(dict(k)["family"], dict(k)["protocol"]): v
              for k, v in exposition.select("sockdiag_udp_receive_buffer_errors_total").items()}
    assert rcvbuf == {("inet", "udp"): 17, ("inet", "udplite"): 3, ("inet6", "udp"): 5, ("inet6", "udplite"): 7}
    errors = {(dict(k)["family"], dict(k)["protocol"]): v
              for k, v in exposition.select("sockdiag_udp_receive_errors_total").items()}
    assert errors == {("inet", "udp"): 19, ("inet", "udplite"): 4, ("inet6", "udp"): 6, ("inet6", "udplite"): 8}
    assert exposition.value("sockdiag_tcp_listen_overflows_total") == 11
    assert exposition.value("sockdiag_tcp_listen_drops_total") == 12


@pytest.mark.parametrize("text", ["Udp: InErrors\nUdp: x\n", "Udp: A B\nUdp: 1\n", "Udp: A\nTcp: 1\n"])
def test_a_garbled_counter_table_is_one_clear_error(text):
    with pytest.raises(DiagMalformed):
        parse_pairs_table(text, "snmp")
