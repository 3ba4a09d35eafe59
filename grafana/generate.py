#!/usr/bin/env python3
"""Generate the Grafana dashboards of sockdiag_exporter, grafana/dashboards/*.json, with Grafana's foundation SDK.

Build-time only: `pip install -e '.[dashboards]'` (the SDK, pinned in pyproject.toml). The output is
deterministic, so regenerating must change nothing (tests/e2e/test_dashboards.py checks). Edit this file or
builders.py, never the JSON, then run:

    python3 grafana/generate.py              # rewrite grafana/dashboards/
    python3 grafana/generate.py --out DIR    # write elsewhere
    python3 grafana/generate.py --check      # exit 1 if the committed JSON is out of date

then `python3 deploy/mixin/render.py` (the mixin imports these files) and grafana/schema-check/check.py.
The dashboards are schemaVersion 41 (Grafana 12) and use a Prometheus data source chosen with the
"datasource" variable. Queries use the recording rules of the mixin (deploy/prometheus/rules.yml) where one
exists.
"""

import argparse
import os
import sys

from builders import (
    BOOL_MAPPINGS,
    EXPORTER,
    RED_FROM_1,
    SOCKETS,
    WARN_AT_80_PERCENT,
    Layout,
    accept_queues_by_protocol,
    against_threshold,
    closed_bytes,
    common_variables,
    connections_per_listener,
    dashed,
    fullest_listeners,
    half_open,
    heatmap_panel,
    listen_overflows,
    listener_drops,
    query,
    query_variable,
    stat_panel,
    state_timeline_panel,
    table_panel,
    timeseries_panel,
    value_mappings,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder

HERE = os.path.dirname(os.path.abspath(__file__))
# The mixin imports them from there (deploy/mixin/render.py renders the shipped grafana/dashboards/).
OUT = os.path.join(os.path.dirname(HERE), "deploy", "mixin", "dashboards")


# --- Sockets overview -----------------------------------------------------------------------------------------

def inet(extra: str) -> str:
    return f'instance_protocol_state:sockdiag_inet_sockets:sum{{{SOCKETS}, {extra}}}'


def overview() -> Layout:
    variables = common_variables() + [
        query_variable("port_group", "Port group", f"sockdiag_port_group_sockets{{{SOCKETS}}}", "port_group",
                       multi=True),
        query_variable("cgroup", "Unit or container", f"sockdiag_cgroup_sockets{{{SOCKETS}}}", "cgroup", multi=True,
                       all_value=".*"),
    ]
    d = Layout("sockdiag-overview", "Sockets overview",
               "Every socket of the selected hosts from sockdiag_exporter: counts by family, protocol and state, "
               "queues, memory and drops, listeners, port groups, network namespaces, units and containers, and "
               "the exporter's own health.", variables)

    d.row("Summary")
    d.add(stat_panel("Sockets", "All sockets of every family on the selected instances. Bad: a steady climb that does "
                     "not follow traffic (a leak), or a sudden jump.",
                     f"sum(instance:sockdiag_sockets:sum{{{SOCKETS}}})", "short"), 4, 4)
    d.add(stat_panel("TCP established", "Established TCP connections (IPv4 and IPv6). Bad: a drop to zero on a "
                     "server, or growth far beyond normal load.",
                     "sum(" + inet('protocol="tcp", state="established"') + ")", "short"), 4, 4)
    d.add(stat_panel("TCP TIME_WAIT", "TCP sockets in TIME_WAIT. Bad: a steady climb: each holds its local port "
                     "towards its destination for 60 s and counts against tcp_max_tw_buckets (see the ephemeral "
                     "port and TIME_WAIT budget panels).",
                     "sum(" + inet('protocol="tcp", state="time_wait"') + ")", "short"), 4, 4)
    d.add(stat_panel("CLOSE_WAIT sockets", "TCP (and MPTCP, DCCP) sockets whose peer closed but the application "
                     "did not. Bad: anything that keeps growing; the alert SockdiagCloseWaitAccumulating fires "
                     "above 100 per instance for 15m.",
                     "sum(" + inet('state="close_wait"') + ")", "short",
                     steps=((None, "green"), (100, "orange"))), 4, 4)
    d.add(stat_panel("Fullest listener", "The highest accept-queue fill (length / limit) of any listening address. "
                     "Bad: above 80% (the application does not accept() fast enough); 100% means connections "
                     "are dropped.",
                     f"max(instance_address:sockdiag_listener_accept_queue:fill_ratio{{{SOCKETS}}})", "percentunit",
                     steps=WARN_AT_80_PERCENT), 4, 4)
    d.add(stat_panel("Failing collectors", "Exporter collectors whose last collection failed (their metrics are "
                     "missing). Bad: anything but 0.",
                     f"count(sockdiag_scrape_collector_success{{{EXPORTER}}} == 0) or vector(0)", "short",
                     steps=RED_FROM_1), 4, 4)

    d.row("Sockets by family, protocol and state")
    d.add(timeseries_panel("Sockets by family", "Sockets per address family (inet, inet6, unix, netlink, packet, ...). "
                           "Bad: a family growing without bound, such as unix sockets leaked by a process.",
                           [query(f"sum by (family) (instance_family:sockdiag_sockets:sum{{{SOCKETS}}})",
                                  "{{family}}")],
                           "short", stack=True), 12, 8)
    d.add(timeseries_panel("Sockets by protocol", "Sockets per family and protocol (for netlink the netlink protocol, "
                           "for packet the ethertype). Bad: unexpected growth of one protocol.",
                           [query(f"sum by (family, protocol) (sockdiag_sockets{{{SOCKETS}}})",
                                  "{{family}} {{protocol}}")],
                           "short", legend_table=True), 12, 8)
    d.add(timeseries_panel("TCP sockets by state", "TCP sockets (IPv4 and IPv6) per state, stacked. Bad: CLOSE_WAIT "
                           "or SYN_RECV growing, FIN_WAIT1/LAST_ACK piling up, TIME_WAIT near the port range.",
                           [query("sum by (state) (" + inet('protocol="tcp"') + ")", "{{state}}")],
                           "short", stack=True, legend_table=True), 12, 8)
    d.add(timeseries_panel("UDP sockets by state", "UDP and UDP-Lite sockets: established (connected) and "
                           "unconnected. Bad: growth that does not follow the workload (leaked sockets).",
                           [query("sum by (protocol, state) (" + inet('protocol=~"udp|udplite"') + ")",
                                  "{{protocol}} {{state}}")], "short", stack=True), 6, 8)
    d.add(timeseries_panel("Unix sockets by type and state", "Unix-domain sockets per type and state. Bad: steady "
                           "growth (a process leaking connections to a local daemon).",
                           [query(f'sum by (socket_type, state) (sockdiag_sockets{{{SOCKETS}, family="unix"}})',
                                  "{{socket_type}} {{state}}")], "short", stack=True), 6, 8)
    d.add(against_threshold("Ephemeral ports: the busiest destination", "Share of the ephemeral port range (less the "
                            "reserved ports) in use towards the busiest destination (local address, remote address "
                            "and port), TIME_WAIT included, per instance and family. Bad: approaching the dashed "
                            "threshold (alert SockdiagEphemeralPortsNearExhaustion); at 100% connect() to it fails "
                            "with EADDRNOTAVAIL.",
                            "max by (instance, netns, family) "
                            f"(sockdiag_ephemeral_port_usage_ratio{{{SOCKETS}}})", "{{instance}} {{netns}} {{family}}",
                            "sockdiag:threshold:ephemeral_port_usage_ratio", "percentunit"), 8, 8)
    d.add(against_threshold("CLOSE_WAIT per instance", "Sockets in CLOSE_WAIT per instance and protocol against "
                            "the alert threshold. Bad: a line that only goes up (the application never closes them).",
                            "sum by (instance, protocol) (" + inet('state="close_wait"') + ")",
                            "{{instance}} {{protocol}}", "sockdiag:threshold:close_wait_sockets", "short"), 8, 8)
    d.add(against_threshold("TCP orphans (FIN_WAIT1, CLOSING, LAST_ACK)", "TCP sockets in the states orphans are in "
                            "(an upper bound of the kernel's orphan count) against 80% of the assumed "
                            "net.ipv4.tcp_max_orphans. Bad: approaching the threshold: the kernel then resets closing "
                            "connections.",
                            f"sum by (instance) (instance:sockdiag_tcp_orphan_states:sum{{{SOCKETS}}})", "{{instance}}",
                            "sockdiag:threshold:tcp_max_orphans * sockdiag:threshold:kernel_limit_fraction",
                            "short"), 8, 8)
    d.add(against_threshold("TIME_WAIT budget", "TIME_WAIT minisockets (time_wait, and fin_wait2 after close) as a "
                            "share of net.ipv4.tcp_max_tw_buckets per instance. Bad: approaching the dashed threshold "
                            "(alert SockdiagTimeWaitBucketsNearLimit): past the limit closing connections skip "
                            "TIME_WAIT.",
                            f"instance:sockdiag_tcp_timewait_buckets:usage_ratio{{{SOCKETS}}}", "{{instance}} {{netns}}",
                            "sockdiag:threshold:kernel_limit_fraction", "percentunit"), 12, 8)
    d.add(timeseries_panel("TIME_WAIT minisockets by state", "Closed connections the kernel keeps as TIME_WAIT "
                           "minisockets, per instance and state: time_wait, and fin_wait2 of connections closed "
                           "before the peer's FIN (a fin_wait2 socket still open is not one). Bad: fin_wait2 "
                           "minisockets piling up: peers that never close (net.ipv4.tcp_fin_timeout).",
                           [query("sum by (instance, netns, state) "
                                  f"(sockdiag_tcp_timewait_minisockets{{{SOCKETS}}})",
                                  "{{instance}} {{netns}} {{state}}")], "short", stack=True), 12, 8)

    d.row("Queues")
    d.add(timeseries_panel("Receive queue bytes", "Sum of receive queues of data sockets (listeners excluded) per "
                           "family and protocol: unread bytes for TCP and unix streams, queued memory for UDP, raw, "
                           "netlink, packet. Bad: a sustained rise: readers are not keeping up.",
                           [query("sum by (family, protocol) "
                                  f"(instance_family_protocol:sockdiag_receive_queue_bytes:sum{{{SOCKETS}}})",
                                  "{{family}} {{protocol}}")], "bytes", legend_table=True), 12, 8)
    d.add(timeseries_panel("Send queue bytes", "Sum of send queues per family and protocol: unacknowledged bytes for "
                           "TCP, memory of unsent or unread data elsewhere. Bad: a sustained rise: peers or the "
                           "network are not keeping up.",
                           [query(f"sum by (family, protocol) (instance_family_protocol:sockdiag_send_queue_bytes:sum"
                                  f"{{{SOCKETS}}})", "{{family}} {{protocol}}")], "bytes", legend_table=True), 12, 8)
    d.add(heatmap_panel("TCP receive queue depth", "How many TCP data sockets have how many unread bytes (per-socket "
                        "gauge histogram). Bad: sockets moving into the upper buckets (above 1 MiB: alert "
                        "SockdiagReceiveQueueBacklog).",
                        f'sockdiag_socket_receive_queue_bytes_bucket{{{SOCKETS}, protocol="tcp"}}'), 12, 8)
    d.add(heatmap_panel("TCP send queue depth", "How many TCP data sockets have how many unacknowledged bytes. Bad: "
                        "many sockets in the upper buckets: slow peers or a congested path.",
                        f'sockdiag_socket_send_queue_bytes_bucket{{{SOCKETS}, protocol="tcp"}}'), 12, 8)
    d.add(timeseries_panel("Sockets with more than 1 MiB unread", "Data sockets whose receive queue holds more than "
                           "1 MiB, per instance, family and protocol. Bad: any that stay for minutes (alert "
                           "SockdiagReceiveQueueBacklog after 15m).",
                           [query("sum by (instance, family, protocol) (instance_family_protocol:"
                                  f"sockdiag_socket_receive_queue_bytes:count_over_1mib{{{SOCKETS}}})",
                                  "{{instance}} {{family}} {{protocol}}")], "short"), 12, 8)
    d.add(timeseries_panel("Unread bytes in established TCP connections", "Receive queue bytes of established TCP "
                           "connections per instance. Bad: a sustained rise on one instance: its applications read "
                           "too slowly.",
                           [query(f'sum by (instance) (sockdiag_receive_queue_bytes{{{SOCKETS}, protocol="tcp", '
                                  'state="established"})', "{{instance}}")], "bytes"), 12, 8)

    d.row("Memory and drops")
    d.add(timeseries_panel("Receive memory", "Memory held by received data (SK_MEMINFO rmem_alloc) per family and "
                           "protocol, for the collectors in memory.collectors. Bad: sustained growth.",
                           [query(f"sum by (family, protocol) (sockdiag_receive_memory_bytes{{{SOCKETS}}})",
                                  "{{family}} {{protocol}}")], "bytes"), 12, 8)
    d.add(timeseries_panel("Receive memory / receive buffer", "Receive memory as a share of the summed receive buffer "
                           "limits (SO_RCVBUF) per family and protocol. Bad: near 100%: sockets are about to drop "
                           "incoming packets.",
                           [query(f"sum by (family, protocol) (sockdiag_receive_memory_bytes{{{SOCKETS}}}) / "
                                  f"sum by (family, protocol) (sockdiag_receive_buffer_bytes{{{SOCKETS}}})",
                                  "{{family}} {{protocol}}")], "percentunit"), 12, 8)
    d.add(timeseries_panel("UDP receive errors", "Datagrams dropped per second because a receive buffer was full "
                           "(RcvbufErrors), and all undelivered datagrams (InErrors). Bad: anything above zero for "
                           "long: data loss (alert SockdiagUDPReceiveBufferErrors).",
                           [query(f"sum by (instance, family, protocol) (rate(sockdiag_udp_receive_buffer_errors_total"
                                  f"{{{SOCKETS}}}[$__rate_interval]))",
                                  "{{instance}} {{family}} {{protocol}} buffer full"),
                            query(f"sum by (instance, family, protocol) (rate(sockdiag_udp_receive_errors_total"
                                  f"{{{SOCKETS}}}[$__rate_interval]))",
                                  "{{instance}} {{family}} {{protocol}} all errors")],
                           "pps"), 12, 8)
    d.add(timeseries_panel("Dropped packets on live sockets", "Sum of the lifetime drop counters of the sockets open "
                           "now (SK_MEMINFO drops), per family, protocol and state. A gauge: it falls when sockets "
                           "close. Bad: a rising line: a live socket is dropping packets.",
                           [query(f"sum by (family, protocol, state) (sockdiag_dropped_packets{{{SOCKETS}}})",
                                  "{{family}} {{protocol}} {{state}}")], "short"), 12, 8)

    d.row("Connections")
    closed = f"sockdiag_tcp_connections_closed_total{{{SOCKETS}}}"
    d.add(timeseries_panel("Connections closed per second", "TCP connections that ended, by direction (inbound: "
                           "accepted from a listener of this host) and outcome: completed, reset, timeout (gave up "
                           "retransmitting), refused and unanswered (connects that failed). Counted when they close, "
                           "from the kernel's destroy events (flows collector). Bad: a jump (a reconnect loop, a "
                           "connection storm) or any outcome but completed rising.",
                           [query(f"sum by (direction, outcome) (rate({closed}[$__rate_interval]))",
                                  "{{direction}} {{outcome}}")], "cps", stack=True, legend_table=True), 8, 8)
    d.add(connections_per_listener("Inbound TCP connections closed per second per listening address (the first "
                                   "flows.max_listeners seen; later ones as \"other\") and outcome. Bad: a listener "
                                   "whose resets or timeouts rise, or whose traffic collapses."), 8, 8)
    d.add(against_threshold("Failed connects", "Share of the outbound TCP connects of each instance that failed "
                            "(refused or unanswered) over 5 minutes, against the alert threshold. Bad: the line near "
                            "or above the dashed threshold (alert SockdiagTCPConnectFailures): a dependency is down or "
                            "unreachable.", f"instance:sockdiag_tcp_connect_failures:ratio_rate5m{{{SOCKETS}}}",
                            "{{instance}} {{netns}}", "sockdiag:threshold:tcp_connect_failure_ratio", "percentunit"),
          8, 8)
    d.add(against_threshold("Retransmitted segments", "Segments retransmitted per segment sent by the TCP connections "
                            "that closed, by direction (inbound: the path to this host's clients; outbound: to its "
                            "dependencies), against the alert threshold. Bad: above the dashed line (alert "
                            "SockdiagTCPRetransmissions): packets are lost on the way.",
                            f"sum by (instance, direction) (rate(sockdiag_tcp_closed_retransmitted_segments_total"
                            f"{{{SOCKETS}}}[$__rate_interval])) / sum by (instance, direction) "
                            f"(rate(sockdiag_tcp_closed_sent_segments_total{{{SOCKETS}}}[$__rate_interval]))",
                            "{{instance}} {{direction}}", "sockdiag:threshold:tcp_retransmission_ratio",
                            "percentunit"), 8, 8)
    d.add(timeseries_panel("Bytes per connection", "Bytes sent (acknowledged by the peer) and received per closed TCP "
                           "connection, by direction. Bad: a sudden change in a steady workload (truncated responses, "
                           "clients that connect and leave at once).",
                           [query(f"sum by (direction) (rate(sockdiag_tcp_closed_{way}_bytes_total{{{SOCKETS}}}"
                                  f"[$__rate_interval])) / sum by (direction) (rate({closed}[$__rate_interval]))",
                                  "{{direction}} " + way) for way in ("sent", "received")], "bytes"), 8, 8)
    d.add(heatmap_panel("RTT at close", "Smoothed round-trip time of TCP connections when they closed, per second by "
                        "bucket (flows.rtt_buckets). Bad: the mass moving up: the network, or a peer, got slower.",
                        f"sockdiag_tcp_closed_rtt_seconds_bucket{{{SOCKETS}}}", unit="s", rate=True), 8, 8)
    d.add(closed_bytes("Bytes through closed connections", "Bytes per second sent (acknowledged) and received by "
                       "the TCP connections that closed, by direction: counted at the close, so a long transfer "
                       "shows when it ends. Bad: a drop to zero on a busy service.",
                       "sockdiag_tcp_closed_{way}_bytes_total", "direction", SOCKETS), 8, 8)
    d.add(timeseries_panel("UDP sockets closed per second", "UDP sockets closed per second (DNS lookups and other "
                           "short-lived UDP users), by family. Bad: a jump without more traffic: a client creating a "
                           "socket per request in a loop.",
                           [query(f"sum by (family) (rate(sockdiag_udp_sockets_closed_total{{{SOCKETS}}}"
                                  "[$__rate_interval]))", "{{family}}")], "ops"), 8, 8)
    d.add(timeseries_panel("Destroy events and losses", "Destroy events the flows collector decoded per second, and "
                           "the times the kernel dropped some because the exporter's receive buffer was full "
                           "(overruns). Bad: any overrun: connections were not counted (raise "
                           "flows.receive_buffer_bytes, or net.core.rmem_max for an unprivileged exporter).",
                           [query(f"sum by (instance, netns) (rate(sockdiag_flow_events_total{{{SOCKETS}}}"
                                  "[$__rate_interval]))", "{{instance}} {{netns}} events"),
                            query(f"sum by (instance, netns) (rate(sockdiag_flow_event_overruns_total{{{SOCKETS}}}"
                                  "[$__rate_interval]))", "{{instance}} {{netns}} overruns")], "ops"), 8, 8)

    d.row("TCP health")
    group = f'{SOCKETS}, port_group=~"$port_group"'
    live = "sockdiag_listener_tcp_live"
    d.add(heatmap_panel("Live RTT", "Smoothed round-trip time of the live established TCP connections of every "
                        "listener (inbound), how many connections in each bucket (tcp_health, a gauge histogram). "
                        "Empty unless tcp_health.enabled. Bad: the mass moving up: the network to the clients, or "
                        "the clients, got slower.", f"{live}_rtt_seconds_bucket{{{SOCKETS}}}", unit="s"), 8, 8)
    d.add(timeseries_panel("Mean RTT per service", "Mean smoothed RTT of the live TCP connections of each listening "
                           "address (inbound) and port group, and the mean minimum RTT of each address. Bad: the mean "
                           "rising away from the minimum (queueing, congestion; alert SockdiagServiceRoundTripTimeRegression), "
                           "or the minimum rising (a longer path).",
                           [query(f"instance_address:{live}_rtt_seconds:mean{{{SOCKETS}}}",
                                  "{{instance}} {{address}}"),
                            query(f"sum by (instance, address) ({live}_min_rtt_seconds_gsum{{{SOCKETS}}}) / sum by "
                                  f"(instance, address) ({live}_min_rtt_seconds_gcount{{{SOCKETS}}})",
                                  "{{instance}} {{address}} min"),
                            query("sum by (instance, port_group, direction) (sockdiag_port_group_tcp_live_rtt_seconds_"
                                  f"gsum{{{group}}}) / sum by (instance, port_group, direction) (sockdiag_port_group_"
                                  f"tcp_live_rtt_seconds_gcount{{{group}}})",
                                  "{{instance}} {{port_group}} {{direction}}")], "s",
                           overrides=[dashed(".* min")]), 8, 8)
    d.add(against_threshold("Retransmitted per segment sent, live connections", "Segments the live TCP connections "
                            "of each listening address retransmitted per segment they sent (over their lives), "
                            "against the retransmission threshold. Bad: above the dashed line, or twice its usual "
                            "(alert SockdiagServiceRetransmissionRegression): packets to the clients are lost.",
                            f"instance_address:{live}_retransmitted_segments:ratio{{{SOCKETS}}}",
                            "{{instance}} {{address}}", "sockdiag:threshold:tcp_retransmission_ratio",
                            "percentunit"), 8, 8)
    d.add(timeseries_panel("What limits throughput", "Share of the time the live connections of each listening "
                           "address had data to send (busy) that they were limited by the peer's receive window (a "
                           "slow reader) or by their own send buffer. Bad: receiver window high: the clients read "
                           "too slowly; send buffer high: raise SO_SNDBUF or net.ipv4.tcp_wmem.",
                           [query(f"sum by (instance, address) ({live}_{kind}_limited_seconds{{{SOCKETS}}}) / sum by "
                                  f"(instance, address) ({live}_busy_seconds{{{SOCKETS}}})",
                                  "{{instance}} {{address}} " + text)
                            for kind, text in (("rwnd", "receiver window"), ("sndbuf", "send buffer"))],
                           "percentunit"), 6, 8)
    d.add(timeseries_panel("Connections in trouble", "Live TCP connections of each listening address in loss "
                           "recovery (retransmitting after loss), and those whose peer advertises a zero window (it "
                           "stopped reading). Bad: any that stay.",
                           [query(f"sum by (instance, address) ({live}_loss_recovery_connections{{{SOCKETS}}})",
                                  "{{instance}} {{address}} loss recovery"),
                            query(f"sum by (instance, address) ({live}_zero_window_connections{{{SOCKETS}}})",
                                  "{{instance}} {{address}} zero window")], "short"), 6, 8)
    d.add(closed_bytes("Traffic per listener", "Bytes per second sent (acknowledged by the clients) and received by "
                       "each listening address: closed connections' bytes plus the live ones' (tcp_health with "
                       "flows), so a long transfer shows while it runs. Bad: a service's traffic collapsing.",
                       "sockdiag_listener_tcp_{way}_bytes_total", "instance, address", SOCKETS), 6, 8)
    d.add(closed_bytes("Traffic per port group", "Bytes per second sent and received by each port group's TCP "
                       "connections, closed and live (tcp_health with flows). Bad: a service's traffic collapsing.",
                       "sockdiag_port_group_tcp_{way}_bytes_total", "port_group, direction", group), 6, 8)

    d.row("Listeners")
    d.add(fullest_listeners("The 10 listening addresses with the fullest accept queues (length / limit). Bad: "
                            "above 80%: the application is not accepting fast enough; at 100% new connections "
                            "are dropped. Details per address on the Listeners dashboard."), 12, 8)
    d.add(accept_queues_by_protocol("Connections waiting for accept() summed over all listeners, and the summed "
                                    "limits, per family and protocol. Bad: the waiting line rising towards the "
                                    "dashed limit."), 12, 8)
    d.add(listen_overflows("TCP listen overflows and drops", "Connections per second the kernel dropped because "
                           "an accept queue was full (ListenOverflows), and all listener drops (ListenDrops). "
                           "Bad: anything above zero: clients see slow or failed connects (alert "
                           "SockdiagTCPListenOverflows)."), 12, 8)
    d.add(timeseries_panel("Listeners folded into address=\"other\"", "Listening sockets beyond listeners.max_series, "
                           "summed into address=\"other\" instead of reported one by one. Bad: above zero if you need "
                           "every listener individually: raise listeners.max_series.",
                           [query(f"sum by (instance, family, protocol) (sockdiag_listeners_folded{{{SOCKETS}}}) "
                                  "or on () vector(0)",  # no series while nothing is folded
                                  "{{instance}} {{family}} {{protocol}}")], "short"), 12, 8)
    d.add(listener_drops("The 10 listening addresses dropping the most SYNs and connections per second (their "
                         "sockets' drop counters). Bad: anything above zero (alert SockdiagListenerDropping): that "
                         "service refuses connections."), 12, 8)
    d.add(half_open("The 10 listening addresses with the most half-open connections (SYN_RECV: their SYN queue). "
                    "Bad: a sudden rise (a SYN flood) or a queue that stays long (clients that cannot complete the "
                    "handshake)."), 12, 8)

    d.row("UDP receivers")
    d.add(timeseries_panel("UDP receivers dropping", "The 10 UDP receivers (unconnected sockets by local address) "
                           "dropping the most datagrams per second. Bad: anything above zero for long (alert "
                           "SockdiagUDPReceiverDropping): that service loses data.",
                           [query(f"topk(10, rate(sockdiag_udp_receiver_drops_total{{{SOCKETS}}}[$__rate_interval]))",
                                  "{{instance}} {{netns}} {{protocol}} {{address}}")], "pps"), 8, 8)
    d.add(timeseries_panel("UDP receiver buffer fill", "Queued datagram memory as a share of the receive buffer "
                           "(SO_RCVBUF) of the 10 fullest UDP receivers. Bad: near 100%: the receiver reads too "
                           "slowly and the next datagrams are dropped.",
                           [query(f"topk(10, sockdiag_udp_receiver_queue_bytes{{{SOCKETS}}} / "
                                  f"sockdiag_udp_receiver_buffer_bytes{{{SOCKETS}}})",
                                  "{{instance}} {{netns}} {{protocol}} {{address}}")], "percentunit",
                           steps=WARN_AT_80_PERCENT), 8, 8)
    d.add(timeseries_panel("UDP receivers not by address", "Unconnected UDP sockets summed into address=\"other\": "
                           "those bound to an ephemeral port (clients that send without connect()) and those beyond "
                           "udp_receivers.max_series. Bad: a climb that does not follow the workload (leaked "
                           "sockets); raise udp_receivers.max_series if a service you need is among them.",
                           [query("sum by (instance, netns, family, protocol) "
                                  f"(sockdiag_udp_receivers_folded{{{SOCKETS}}})",
                                  "{{instance}} {{netns}} {{family}} {{protocol}}")], "short"), 8, 8)

    group = f'{SOCKETS}, port_group=~"$port_group"'
    d.row("Port groups")
    d.add(timeseries_panel("Sockets per port group", "Sockets whose local or remote port is in a configured port group "
                           "(port_groups in the exporter config), per protocol and state. Empty without port groups. "
                           "Bad: a group's CLOSE_WAIT or SYN_RECV growing, or its established count collapsing.",
                           [query(f"sum by (port_group, protocol, state) (sockdiag_port_group_sockets{{{group}}})",
                                  "{{port_group}} {{protocol}} {{state}}")], "short", legend_table=True), 8, 8)
    d.add(timeseries_panel("Port group receive queues", "Receive queue bytes of each port group's data sockets. Bad: "
                           "a sustained rise: that service reads too slowly.",
                           [query(f"sum by (port_group, protocol) (sockdiag_port_group_receive_queue_bytes{{{group}}})",
                                  "{{port_group}} {{protocol}}")], "bytes"), 8, 8)
    d.add(timeseries_panel("Port group send queues", "Send queue bytes of each port group's data sockets. Bad: a "
                           "sustained rise: that service's peers (or the network to them) are slow.",
                           [query(f"sum by (port_group, protocol) (sockdiag_port_group_send_queue_bytes{{{group}}})",
                                  "{{port_group}} {{protocol}}")], "bytes"), 8, 8)
    d.add(timeseries_panel("Port group connections closed per second", "TCP connections of each port group that "
                           "ended, by direction and outcome (flows collector). Bad: refused, unanswered, reset or "
                           "timeout rising for one group: that service, or the path to it, fails.",
                           [query(f"sum by (port_group, direction, outcome) (rate("
                                  f"sockdiag_port_group_tcp_connections_closed_total{{{group}}}[$__rate_interval]))",
                                  "{{port_group}} {{direction}} {{outcome}}")], "cps", legend_table=True), 12, 8)
    d.add(closed_bytes("Port group bytes through closed connections", "Bytes per second sent (acknowledged) "
                       "and received by each port group's TCP connections, counted when they close. Bad: a "
                       "service's traffic collapsing.", "sockdiag_port_group_tcp_closed_{way}_bytes_total",
                       "port_group, direction", group), 12, 8)

    d.row("Network namespaces, units and containers")
    one_ns = f'{EXPORTER}, netns=~"$netns"'
    d.add(table_panel("Network namespaces", "Each collected network namespace: its inode and, for namespaces "
                      "found through a process, that process's cgroup and the pod, container or systemd unit it "
                      "belongs to. Empty unless namespaces.named or namespaces.processes is on. Bad: a namespace "
                      "you expect missing (see namespaces.include and max_namespaces), or netns=\"other\".",
                      f"sockdiag_netns_info{{{one_ns}}}", "none", hide=("Value",)), 12, 8)
    d.add(state_timeline_panel("Namespace collection", "Whether every collector succeeded in each network "
                               "namespace. Bad: red (failed): that namespace's sockets are missing or incomplete.",
                               f"min by (netns) (sockdiag_netns_up{{{one_ns}}})", "{{netns}}", "none",
                               BOOL_MAPPINGS), 12, 8)
    d.add(timeseries_panel("Sockets per network namespace", "All sockets of each network namespace (netns "
                           "label; the exporter's own is host or its ip netns name). Bad: one namespace "
                           "climbing without its traffic (a leak in that container).",
                           [query(f"sum by (instance, netns) (instance:sockdiag_sockets:sum{{{SOCKETS}}})",
                                  "{{instance}} {{netns}}")], "short", legend_table=True), 8, 8)
    unit = f'{SOCKETS}, cgroup=~"$cgroup"'
    d.add(timeseries_panel("Sockets per unit or container", "Internet sockets per systemd unit or container "
                           "(cgroup label; with cgroups.enabled on a cgroup v2 host) and state. Bad: a unit's "
                           "CLOSE_WAIT or TIME_WAIT growing, or established connections piling up in one "
                           "container.",
                           [query(f"sum by (cgroup, state) (sockdiag_cgroup_sockets{{{unit}}})",
                                  "{{cgroup}} {{state}}")], "short", legend_table=True), 8, 8)
    d.add(timeseries_panel("Queues per unit or container", "Receive and send queue bytes of each unit's or "
                           "container's data sockets. Bad: a sustained rise: that service reads too slowly "
                           "(receive) or its peers are slow (send).",
                           [query(f"sum by (cgroup) (sockdiag_cgroup_receive_queue_bytes{{{unit}}})",
                                  "{{cgroup}} receive"),
                            query(f"sum by (cgroup) (sockdiag_cgroup_send_queue_bytes{{{unit}}})",
                                  "{{cgroup}} send")], "bytes"), 8, 8)

    d.row("Exporter health")
    d.add(state_timeline_panel("Collectors", "Whether each collector's last collection succeeded. Bad: red (failed): "
                               "that collector's socket metrics are missing (alert SockdiagCollectorFailed).",
                               f"min by (collector) (sockdiag_scrape_collector_success{{{EXPORTER}}})", "{{collector}}",
                               "none", BOOL_MAPPINGS), 12, 8)
    d.add(timeseries_panel("Collector durations", "Time each collector took in its last collection (slowest "
                           "instance). Bad: approaching the scrape timeout, or netlink.timeout_seconds.",
                           [query(f"max by (collector) (sockdiag_scrape_collector_duration_seconds{{{EXPORTER}}})",
                                  "{{collector}}")], "s", stack=True), 12, 8)
    d.add(timeseries_panel("Scrape duration", "How long Prometheus took to scrape each exporter (every collector plus "
                           "HTTP). Bad: approaching the job's scrape_timeout: scrapes then fail (alert "
                           "SockdiagExporterDown).",
                           [query(f"scrape_duration_seconds{{{EXPORTER}}}", "{{instance}}")], "s"), 8, 8)
    d.add(stat_panel("Targets down", "Exporter targets Prometheus could not scrape at the last attempt. Bad: anything "
                     "but 0.", f"count(up{{{EXPORTER}}} == 0) or vector(0)", "short",
                     steps=RED_FROM_1), 4, 8)
    d.add(stat_panel("Missing diag handlers", "Family/protocol pairs this kernel has no sock_diag handler for: they "
                     "are not reported (raw sockets are then read from /proc). Bad: a protocol you use, such as "
                     "sctp, listed as missing in the table.",
                     f"count(sockdiag_diag_handler_available{{{SOCKETS}}} == 0) or vector(0)", "short"), 4, 8)
    d.add(table_panel("Diag handlers", "1 (ok) if the kernel answers sock_diag dumps for the family and protocol, 0 "
                      "(failed) if it has no handler. Bad: 0 for a protocol in use: its sockets are invisible.",
                      f"sort(sockdiag_diag_handler_available{{{SOCKETS}}})", "none",
                      mappings=value_mappings(**{"0": ("missing", "orange"), "1": ("ok", "green")})), 8, 8)
    d.add(timeseries_panel("Netlink dumps and retries", "sock_diag dump requests per second and those started again "
                           "after an interrupted dump or a transient error. Bad: retries close to the dump rate: heavy "
                           "socket churn or too small netlink.receive_buffer_bytes.",
                           [query(f"sum by (instance) (rate(sockdiag_netlink_dumps_total{{{EXPORTER}}}"
                                  "[$__rate_interval]))",
                                  "{{instance}} dumps"),
                            query(f"sum by (instance) (rate(sockdiag_netlink_dump_retries_total{{{EXPORTER}}}"
                                  "[$__rate_interval]))", "{{instance}} retries")], "ops"), 8, 8)
    d.add(timeseries_panel("Series left out by series_budget", "Series dropped from each scrape to stay within "
                           "series_budget, per breakdown (only with series_budget set). Bad: above zero when you "
                           "need that breakdown: raise the budget.",
                           [query(f"sum by (instance, breakdown) (sockdiag_series_budget_dropped_series{{{EXPORTER}}})",
                                  "{{instance}} {{breakdown}}")], "short"), 8, 8)
    d.add(timeseries_panel("Exporter resident memory", "Resident memory of the exporter process. Bad: memory that "
                           "grows over days (it stays flat whatever the socket count).",
                           [query(f"process_resident_memory_bytes{{{EXPORTER}}}", "{{instance}} resident memory")],
                           "bytes"), 8, 8)
    return d


# --- Listeners ------------------------------------------------------------------------------------------------

def listeners() -> Layout:
    # address: "All" is every address found (not .*), as the repeated row needs the values one by one.
    variables = common_variables() + [
        query_variable("address", "Listening address", f"sockdiag_listener_accept_queue_limit{{{SOCKETS}}}",
                       "address", multi=True)]
    d = Layout("sockdiag-listeners", "Listeners",
               "Accept queues of listening sockets from sockdiag_exporter: one row per listening address (the "
               "address variable), with the kernel's listen overflow and drop counters of its network namespace.",
               variables)
    chosen = f'{SOCKETS}, address=~"$address"'

    d.row("All listeners")
    d.add(fullest_listeners("The 10 listening addresses (of those chosen) whose fullest socket has the fullest "
                            "accept queue. Bad: above 80% (alert SockdiagListenerAcceptQueueNearLimit after 10m); 100% "
                            "means new connections are being dropped.", chosen), 8, 8)
    d.add(listen_overflows("TCP listen overflows and drops (host-wide)", "Connections per second dropped because "
                           "an accept queue was full (ListenOverflows) and all listener drops (ListenDrops). The "
                           "kernel counts them per network namespace, not per listener. Bad: anything above zero "
                           "(alert SockdiagTCPListenOverflows)."), 8, 8)
    d.add(accept_queues_by_protocol("Connections waiting for accept() over all listeners and the summed limits, "
                                    "per family and protocol. Bad: waiting approaching the dashed limit."), 8, 8)
    d.add(listener_drops("The 10 listening addresses (of those chosen) dropping the most SYNs and connections per "
                         "second. Bad: anything above zero (alert SockdiagListenerDropping).", chosen), 12, 8)
    d.add(half_open("The 10 listening addresses (of those chosen) with the most half-open connections (SYN_RECV). "
                    "Bad: a sudden rise (a SYN flood) or one that stays (clients that cannot complete the "
                    "handshake).", chosen), 12, 8)
    d.add(connections_per_listener("Inbound TCP connections closed per second for the chosen listening addresses "
                                   "(from the flows collector, the first flows.max_listeners addresses seen), by "
                                   "outcome. Bad: resets or timeouts rising on one listener.", chosen), 12, 8)
    d.add(closed_bytes("Bytes through each listener's closed connections", "Bytes per second sent "
                       "(acknowledged by the clients) and received by the chosen listeners' connections, counted "
                       "when they close. Bad: a listener's traffic collapsing while its connections go on.",
                       "sockdiag_listener_tcp_closed_{way}_bytes_total", "address", chosen), 12, 8)
    d.add(heatmap_panel("Live RTT of the chosen listeners", "Smoothed round-trip time of the live established "
                        "connections of the chosen listening addresses, how many in each bucket (tcp_health; empty "
                        "unless tcp_health.enabled). Pick one address to see its own. Bad: the mass moving up.",
                        f"sockdiag_listener_tcp_live_rtt_seconds_bucket{{{chosen}}}", unit="s"), 12, 8)
    d.add(timeseries_panel("Retransmissions and limits per listener", "Per chosen listening address, over its live "
                           "connections (tcp_health): segments retransmitted per segment sent, and the share of their "
                           "busy time limited by the clients' receive window. Bad: either rising (alert "
                           "SockdiagServiceRetransmissionRegression; slow clients).",
                           [query("instance_address:sockdiag_listener_tcp_live_retransmitted_segments:ratio"
                                  f"{{{chosen}}}", "{{instance}} {{address}} retransmitted"),
                            query("sum by (instance, address) (sockdiag_listener_tcp_live_rwnd_limited_seconds"
                                  f"{{{chosen}}}) / sum by (instance, address) (sockdiag_listener_tcp_live_busy_"
                                  f"seconds{{{chosen}}})", "{{instance}} {{address}} receiver-window limited")],
                           "percentunit"), 12, 8)

    one = f'{SOCKETS}, address=~"$address"'
    d.row("Listener $address", repeat="address")
    d.add(timeseries_panel("Accept queue: waiting vs limit", "Connections waiting for accept() on this address and "
                           "its accept-queue limit (listen() backlog capped by net.core.somaxconn), per instance and "
                           "protocol. Bad: the waiting line reaching the dashed limit: new connections are dropped.",
                           [query("sum by (instance, family, protocol) "
                                  f"(sockdiag_listener_accept_queue_length{{{one}}})",
                                  "{{instance}} {{family}} {{protocol}} waiting"),
                            query("sum by (instance, family, protocol) "
                                  f"(sockdiag_listener_accept_queue_limit{{{one}}})",
                                  "{{instance}} {{family}} {{protocol}} limit")],
                           "short", overrides=[dashed(".* limit")]), 9, 8)
    d.add(timeseries_panel("Accept queue fill", "Waiting connections as a share of the limit: of the fullest socket "
                           "(what the alert uses) and of all the address's sockets together (SO_REUSEPORT). Bad: the "
                           "fullest above the 80% line for minutes (alert SockdiagListenerAcceptQueueNearLimit); 100% "
                           "drops connections. A fullest socket far above the average: one worker is stuck.",
                           [query(f"instance_address:sockdiag_listener_accept_queue:fill_ratio{{{one}}} or "
                                  f"sockdiag_listener_sockets{{{one}}} * 0",  # an empty queue has no fill series
                                  "{{instance}} {{family}} {{protocol}} fullest socket"),
                            query(f"sockdiag_listener_accept_queue_length{{{one}}} / "
                                  f"sockdiag_listener_accept_queue_limit{{{one}}}",
                                  "{{instance}} {{family}} {{protocol}} all sockets")], "percentunit",
                           steps=((None, "green"), (0.8, "red")), threshold_line=True), 6, 8)
    d.add(listen_overflows("Listen overflows and drops (host-wide)", "The TCP ListenOverflows and ListenDrops "
                           "per second of the listener's network namespace, shown next to it to correlate: the "
                           "kernel does not count them per listener. Bad: above zero while this listener is full."),
          6, 8)
    d.add(stat_panel("Listening sockets", "Sockets behind this address: more than 1 with SO_REUSEPORT (their queues "
                     "and limits are summed). Bad: fewer than the application should have (a worker died).",
                     f"sum(sockdiag_listener_sockets{{{one}}})", "short"), 3, 8)
    every = f"sum by (instance, family, protocol) (sockdiag_listener_sockets{{{one}}}) * 0"  # 0 where none
    d.add(timeseries_panel("Drops and half-open connections", "SYNs and connections this address's sockets drop per "
                           "second (their SK_MEMINFO drop counters: what ss -ltnm shows as d) and its connections in "
                           "SYN_RECV (the SYN queue). Bad: drops above zero (alert SockdiagListenerDropping); "
                           "half-open connections that pile up (a SYN flood). Unix listeners count no drops: 0.",
                           [query("sum by (instance, family, protocol) (rate(sockdiag_listener_drops_total"
                                  f"{{{one}}}[$__rate_interval])) or {every}",
                                  "{{instance}} {{family}} {{protocol}} drops/s"),
                            query("sum by (instance, family, protocol) (sockdiag_listener_half_open_connections"
                                  f"{{{one}}}) or {every}", "{{instance}} {{family}} {{protocol}} half-open")],
                           "short"), 24, 8)
    return d


DASHBOARDS = {"sockdiag-overview.json": overview, "sockdiag-listeners.json": listeners}


def render_all() -> dict:
    encoder = JSONEncoder(sort_keys=True, indent=2, ensure_ascii=False)
    return {name: encoder.encode(build().build()) + "\n" for name, build in DASHBOARDS.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=OUT, help="directory to write the dashboards to (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the files in --out differ")
    args = parser.parse_args(argv)
    rendered = render_all()
    if args.check:
        stale = []
        for name, text in rendered.items():
            path = os.path.join(args.out, name)
            if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
                stale.append(name)
        if stale:
            print(f"out of date: {', '.join(stale)}; run python3 grafana/generate.py", file=sys.stderr)
            return 1
        return 0
    os.makedirs(args.out, exist_ok=True)
    for name, text in rendered.items():
        with open(os.path.join(args.out, name), "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
