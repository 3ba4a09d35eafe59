"""Every metric the exporter serves: name, type, labels and help, in one place (README's table mirrors it)."""

from typing import NamedTuple, Tuple

SOCKET_LABELS = ("family", "socket_type", "protocol", "state")
LISTEN_LABELS = ("family", "socket_type", "protocol")
LISTENER_LABELS = ("family", "socket_type", "protocol", "address")
GROUP_LABELS = ("port_group", "family", "protocol", "state")


class Metric(NamedTuple):
    name: str
    kind: str  # "gauge", "counter" (name without _total), "histogram" or "gaugehistogram"
    labels: Tuple[str, ...]
    help: str


SOCKETS = Metric(
    "sockdiag_sockets", "gauge", SOCKET_LABELS,
    "Sockets by address family, socket type, protocol and state.",
)
RECEIVE_QUEUE = Metric(
    "sockdiag_receive_queue_bytes", "gauge", SOCKET_LABELS,
    "Sum of the receive queues of data sockets (not listeners): unread bytes (tcp, unix stream), "
    "receive memory (udp, raw, netlink, packet).",
)
SEND_QUEUE = Metric(
    "sockdiag_send_queue_bytes", "gauge", SOCKET_LABELS,
    "Sum of the send queues of data sockets (not listeners): unacknowledged bytes (tcp), "
    "send memory (udp, raw, unix, netlink, packet).",
)
ACCEPT_QUEUE_LENGTH = Metric(
    "sockdiag_accept_queue_length", "gauge", LISTEN_LABELS,
    "Sum over listening sockets of connections waiting to be accepted.",
)
ACCEPT_QUEUE_LIMIT = Metric(
    "sockdiag_accept_queue_limit", "gauge", LISTEN_LABELS,
    "Sum over listening sockets of their accept queue limits (the listen() backlog, capped by somaxconn).",
)
LISTENER_QUEUE_LENGTH = Metric(
    "sockdiag_listener_accept_queue_length", "gauge", LISTENER_LABELS,
    "Connections waiting to be accepted, per listening address (sockets sharing one, SO_REUSEPORT, are summed); "
    "address=\"other\" sums the listeners beyond listeners.max_series.",
)
LISTENER_QUEUE_LIMIT = Metric(
    "sockdiag_listener_accept_queue_limit", "gauge", LISTENER_LABELS,
    "Accept queue limit per listening address (summed like the length).",
)
LISTENER_SOCKETS = Metric(
    "sockdiag_listener_sockets", "gauge", LISTENER_LABELS,
    "Listening sockets behind a per-listener series (more than 1 with SO_REUSEPORT, and for address=\"other\").",
)
LISTENERS_FOLDED = Metric(
    "sockdiag_listeners_folded", "gauge", LISTEN_LABELS,
    "Listening sockets not reported individually (beyond listeners.max_series) but summed into address=\"other\".",
)
LISTENER_MAX_FILL = Metric(
    "sockdiag_listener_accept_queue_max_fill_ratio", "gauge", LISTENER_LABELS,
    "Accept queue fill (length / limit) of the fullest listening socket at that address: one stuck socket of an "
    "SO_REUSEPORT group shows here while the summed length and limit average it away.",
)
LISTENER_DROPS = Metric(
    "sockdiag_listener_drops", "counter", LISTENER_LABELS,
    "SYNs and connections the listening sockets at that address dropped (SK_MEMINFO drops; inet listeners). Each "
    "socket counts from its creation: the counter restarts when the listener is re-created, which rate() handles.",
)
LISTENER_HALF_OPEN = Metric(
    "sockdiag_listener_half_open_connections", "gauge", LISTENER_LABELS,
    "Connections of that listening address in SYN_RECV (its SYN queue: request sockets, and Fast Open children "
    "not yet acknowledged); tcp and dccp listeners that have any.",
)
RECEIVER_QUEUE = Metric(
    "sockdiag_udp_receiver_queue_bytes", "gauge", LISTENER_LABELS,
    "Receive queue memory of the unconnected UDP and UDP-Lite sockets bound to that address (SO_REUSEPORT sockets "
    "summed); address=\"other\" sums the ones bound to an ephemeral port and those beyond udp_receivers.max_series.",
)
RECEIVER_BUFFER = Metric(
    "sockdiag_udp_receiver_buffer_bytes", "gauge", LISTENER_LABELS,
    "Receive buffer limit (SO_RCVBUF) of the UDP receivers at that address, summed like the queue.",
)
RECEIVER_DROPS = Metric(
    "sockdiag_udp_receiver_drops", "counter", LISTENER_LABELS,
    "Datagrams the UDP receivers at that address dropped (SK_MEMINFO drops: a full buffer, a bad checksum, a "
    "filter). Each socket counts from its creation: the counter restarts with the receiver, which rate() handles.",
)
RECEIVER_SOCKETS = Metric(
    "sockdiag_udp_receiver_sockets", "gauge", LISTENER_LABELS,
    "Unconnected UDP sockets behind a receiver series (more than 1 with SO_REUSEPORT, and for address=\"other\").",
)
RECEIVERS_FOLDED = Metric(
    "sockdiag_udp_receivers_folded", "gauge", LISTEN_LABELS,
    "Unconnected UDP sockets summed into address=\"other\" (bound to an ephemeral port, or beyond "
    "udp_receivers.max_series); only where there are some.",
)
EPHEMERAL_RANGE = Metric(
    "sockdiag_ephemeral_port_range_size", "gauge", (),
    "Ports connect() can pick: net.ipv4.ip_local_port_range less net.ipv4.ip_local_reserved_ports.",
)
EPHEMERAL_USAGE = Metric(
    "sockdiag_ephemeral_port_usage_ratio", "gauge", ("family",),
    "Highest share of the ephemeral port range in use towards one destination: TCP sockets (every state but "
    "listen) with a local port in the range, per local address, remote address and remote port, over the range "
    "size; 1 means connect() to that destination fails (EADDRNOTAVAIL). Families with such sockets only.",
)
EPHEMERAL_DESTINATION_USAGE = Metric(
    "sockdiag_ephemeral_port_destination_usage_ratio", "gauge", ("family", "destination"),
    "With ephemeral_ports.destinations: the usage ratio of each of the busiest destinations (remote address and "
    "port; with several local addresses, the busiest one).",
)
EPHEMERAL_DESTINATIONS_FOLDED = Metric(
    "sockdiag_ephemeral_port_destinations_folded", "gauge", ("family",),
    "With ephemeral_ports.destinations: destinations not reported one by one.",
)
TIMEWAIT_MINISOCKETS = Metric(
    "sockdiag_tcp_timewait_minisockets", "gauge", ("family", "state"),
    "TCP connections the kernel keeps as TIME_WAIT minisockets: in time_wait, and in fin_wait2 once their "
    "application has closed them (a live fin_wait2 socket is a full socket). They count against "
    "net.ipv4.tcp_max_tw_buckets. States with some only.",
)
TIMEWAIT_BUCKETS = Metric(
    "sockdiag_tcp_max_timewait_buckets", "gauge", (),
    "net.ipv4.tcp_max_tw_buckets: more minisockets than this and closing connections skip TIME_WAIT (\"time wait "
    "bucket table overflow\").",
)
RECEIVE_QUEUE_HISTOGRAM = Metric(
    "sockdiag_socket_receive_queue_bytes", "gaugehistogram", LISTEN_LABELS,
    "Distribution of the receive queues of data sockets (every socket but listeners), one count per socket.",
)
SEND_QUEUE_HISTOGRAM = Metric(
    "sockdiag_socket_send_queue_bytes", "gaugehistogram", LISTEN_LABELS,
    "Distribution of the send queues of data sockets (every socket but listeners), one count per socket.",
)
def _several(kind: str, labels: Tuple[str, ...], suffix: str, named_texts) -> Tuple[Metric, ...]:
    """Metrics of one kind and labels whose help texts end alike: (name, text) pairs."""
    return tuple(Metric(name, kind, labels, text + suffix) for name, text in named_texts)


MEMORY = _several(
    "gauge", SOCKET_LABELS, " Only for collectors listed in memory.collectors.", (
        ("sockdiag_receive_memory_bytes", "Sum of memory held by received data (SK_MEMINFO rmem_alloc)."),
        ("sockdiag_receive_buffer_bytes", "Sum of receive buffer limits (SK_MEMINFO rcvbuf, SO_RCVBUF)."),
        ("sockdiag_send_memory_bytes", "Sum of memory held by data being sent (SK_MEMINFO wmem_alloc)."),
        ("sockdiag_send_buffer_bytes", "Sum of send buffer limits (SK_MEMINFO sndbuf, SO_SNDBUF)."),
        ("sockdiag_forward_alloc_bytes", "Sum of memory reserved ahead (SK_MEMINFO fwd_alloc)."),
        ("sockdiag_send_queued_memory_bytes", "Sum of memory of the send queues (SK_MEMINFO wmem_queued)."),
        ("sockdiag_option_memory_bytes", "Sum of socket option memory (SK_MEMINFO optmem)."),
        ("sockdiag_backlog_bytes", "Sum of memory of packets in socket backlogs (SK_MEMINFO backlog)."),
        ("sockdiag_dropped_packets", "Sum over live sockets of their lifetime counts of dropped incoming packets "
         "(SK_MEMINFO drops). A gauge: it falls when sockets close; rate() the *_errors_total counters instead."),
    )
)
PORT_GROUP_SOCKETS = Metric(
    "sockdiag_port_group_sockets", "gauge", GROUP_LABELS,
    "Sockets whose local or remote port is in a configured port group (port_groups).",
)
PORT_GROUP_RECEIVE_QUEUE = Metric(
    "sockdiag_port_group_receive_queue_bytes", "gauge", GROUP_LABELS,
    "Sum of receive queues of the port group's data sockets (not listeners).",
)
PORT_GROUP_SEND_QUEUE = Metric(
    "sockdiag_port_group_send_queue_bytes", "gauge", GROUP_LABELS,
    "Sum of send queues of the port group's data sockets (not listeners).",
)
CGROUP_LABELS = ("cgroup", "family", "protocol", "state")
CGROUP_SOCKETS = Metric(
    "sockdiag_cgroup_sockets", "gauge", CGROUP_LABELS,
    "Sockets by the systemd unit or container their cgroup belongs to (cgroup v2; \"none\": no owner, e.g. "
    "time_wait; \"other\": beyond cgroups.max_series). Only states with sockets.",
)
CGROUP_RECEIVE_QUEUE = Metric(
    "sockdiag_cgroup_receive_queue_bytes", "gauge", CGROUP_LABELS,
    "Sum of receive queues of the cgroup's data sockets (not listeners).",
)
CGROUP_SEND_QUEUE = Metric(
    "sockdiag_cgroup_send_queue_bytes", "gauge", CGROUP_LABELS,
    "Sum of send queues of the cgroup's data sockets (not listeners).",
)
UDP_RECEIVE_BUFFER_ERRORS = Metric(
    "sockdiag_udp_receive_buffer_errors", "counter", ("family", "protocol"),
    "Datagrams dropped because a socket receive buffer was full (/proc/net/snmp{,6} RcvbufErrors).",
)
UDP_RECEIVE_ERRORS = Metric(
    "sockdiag_udp_receive_errors", "counter", ("family", "protocol"),
    "Datagrams that could not be delivered, buffer full included (/proc/net/snmp{,6} InErrors).",
)
TCP_LISTEN_OVERFLOWS = Metric(
    "sockdiag_tcp_listen_overflows", "counter", (),
    "Times a TCP listener's accept queue was full when a connection completed (TcpExt ListenOverflows).",
)
TCP_LISTEN_DROPS = Metric(
    "sockdiag_tcp_listen_drops", "counter", (),
    "SYNs or completed connections a TCP listener dropped, overflows included (TcpExt ListenDrops).",
)
FLOW_LABELS = ("family", "direction")
TCP_CLOSED = Metric(
    "sockdiag_tcp_connections_closed", "counter", FLOW_LABELS + ("outcome",),
    "TCP connections closed (sock_diag destroy events), by direction (inbound: the local port was listening) and "
    "outcome (completed, reset, timeout, refused, unanswered: see README).",
)
TCP_CLOSED_SUMS = _several(
    "counter", FLOW_LABELS, " summed over closed TCP connections.", (
        ("sockdiag_tcp_closed_sent_bytes", "Bytes the peer acknowledged (tcpi_bytes_acked; a SYN and a FIN count 1)"),
        ("sockdiag_tcp_closed_received_bytes", "Bytes received (tcpi_bytes_received; a FIN counts 1)"),
        ("sockdiag_tcp_closed_sent_segments", "Segments sent, retransmissions included (tcpi_segs_out)"),
        ("sockdiag_tcp_closed_received_segments", "Segments received (tcpi_segs_in)"),
        ("sockdiag_tcp_closed_retransmitted_segments", "Segments retransmitted (tcpi_total_retrans)"),
        ("sockdiag_tcp_closed_retransmitted_bytes", "Bytes retransmitted (tcpi_bytes_retrans)"),
    )
)
TCP_CLOSED_RTT = Metric(
    "sockdiag_tcp_closed_rtt_seconds", "histogram", ("direction",),
    "Smoothed round-trip time (tcpi_rtt) of established TCP connections when they closed. Buckets from "
    "flows.rtt_buckets.",
)
LISTENER_FLOW_LABELS = ("family", "address")
LISTENER_TCP_CLOSED = Metric(
    "sockdiag_listener_tcp_connections_closed", "counter", LISTENER_FLOW_LABELS + ("outcome",),
    "Inbound TCP connections closed, per listening address (the first flows.max_listeners addresses seen get their "
    "own series, later ones address=\"other\").",
)
LISTENER_TCP_CLOSED_BYTES = _several(
    "counter", LISTENER_FLOW_LABELS, " summed over the listener's closed connections.",
    (("sockdiag_listener_tcp_closed_sent_bytes", "Bytes the peers acknowledged"),
     ("sockdiag_listener_tcp_closed_received_bytes", "Bytes received")))
GROUP_FLOW_LABELS = ("port_group", "family", "direction")
PORT_GROUP_TCP_CLOSED = Metric(
    "sockdiag_port_group_tcp_connections_closed", "counter", GROUP_FLOW_LABELS + ("outcome",),
    "TCP connections closed whose local or remote port is in the port group.",
)
PORT_GROUP_TCP_CLOSED_BYTES = _several(
    "counter", GROUP_FLOW_LABELS, " summed over the port group's closed connections.",
    (("sockdiag_port_group_tcp_closed_sent_bytes", "Bytes the peers acknowledged"),
     ("sockdiag_port_group_tcp_closed_received_bytes", "Bytes received")))
# Live TCP health (tcp_health.enabled): sums over the connected TCP sockets of a listener (inbound) or port group.
HEALTH_SUFFIX = " summed over its live ESTABLISHED TCP connections (tcp_health)."
_HEALTH = (
    ("retransmitted_segments", "Segments retransmitted over each connection's life (tcpi_total_retrans; "
     "ss -ti retrans:/N)"),
    ("retransmitted_unacked_segments", "Retransmitted segments not yet acknowledged (tcpi_retrans; ss -ti "
     "retrans:N/)"),
    ("lost_segments", "Segments the sender considers lost (tcpi_lost)"),
    ("unacked_segments", "Segments sent and not yet acknowledged (tcpi_unacked)"),
    ("notsent_bytes", "Bytes written by the application and not yet sent (tcpi_notsent_bytes)"),
    ("busy_seconds", "Time spent with data to send (tcpi_busy_time)"),
    ("rwnd_limited_seconds", "Time spent limited by the peer's receive window (tcpi_rwnd_limited)"),
    ("sndbuf_limited_seconds", "Time spent limited by the send buffer (tcpi_sndbuf_limited)"),
    ("sent_segments", "Segments sent, retransmissions included (tcpi_segs_out)"),
)
_HEALTH_COUNTS = (
    ("loss_recovery_connections", "Connections in loss recovery (tcpi_ca_state Recovery or Loss)"),
    ("zero_window_connections", "Connections whose peer advertises a zero window (tcpi_snd_wnd 0)"),
)
_HEALTH_RTT = (
    ("rtt_seconds", "Smoothed round-trip time (tcpi_rtt) of the live ESTABLISHED TCP connections, one count per "
     "connection (tcp_health; buckets from tcp_health.rtt_buckets)."),
    ("min_rtt_seconds", "Minimum round-trip time seen (tcpi_min_rtt) by the live ESTABLISHED TCP connections that "
     "measured one (tcp_health)."),
)
_TRAFFIC = (
    ("sent_bytes", "Bytes the peers acknowledged: closed connections' (flows) plus the live connections' "
     "tcpi_bytes_acked; never decreases (a decrease is clamped and counted in "
     "sockdiag_tcp_traffic_clamped_total)"),
    ("received_bytes", "Bytes received: closed connections' plus the live connections' tcpi_bytes_received; never "
     "decreases (clamped likewise)"),
)


def _health(prefix: str, labels: Tuple[str, ...], whose: str):
    sums = _several("gauge", labels, "", [(f"{prefix}_tcp_live_{name}", f"{text}, per {whose},{HEALTH_SUFFIX}")
                                          for name, text in _HEALTH + _HEALTH_COUNTS])
    rtt = tuple(Metric(f"{prefix}_tcp_live_{name}", "gaugehistogram", labels, f"{text[:-1]}, per {whose}.")
                for name, text in _HEALTH_RTT)
    traffic = _several("counter", labels, f", per {whose} (tcp_health with flows).",
                       [(f"{prefix}_tcp_{name}", text) for name, text in _TRAFFIC])
    return rtt, sums, traffic


LISTENER_HEALTH_RTT, LISTENER_HEALTH, LISTENER_TRAFFIC = _health("sockdiag_listener", LISTENER_FLOW_LABELS,
                                                                 "listening address")
PORT_GROUP_HEALTH_RTT, PORT_GROUP_HEALTH, PORT_GROUP_TRAFFIC = _health("sockdiag_port_group", GROUP_FLOW_LABELS,
                                                                       "port group")
TRAFFIC_CLAMPED = Metric(
    "sockdiag_tcp_traffic_clamped", "counter", (),
    "Times a per-service traffic counter (closed + live bytes) came out lower than its last value and was held "
    "there: a closed connection whose destroy event was lost (sockdiag_flow_event_overruns_total) or not yet read.",
)
HEALTH_SOCKETS = Metric(
    "sockdiag_tcp_health_sockets", "gauge", (),
    "Connected TCP sockets the tcp_health dump returned (after its port filter), counted or not.",
)
HEALTH = (LISTENER_HEALTH_RTT + LISTENER_HEALTH + LISTENER_TRAFFIC + PORT_GROUP_HEALTH_RTT + PORT_GROUP_HEALTH
          + PORT_GROUP_TRAFFIC + (TRAFFIC_CLAMPED, HEALTH_SOCKETS))
UDP_CLOSED = Metric(
    "sockdiag_udp_sockets_closed", "counter", ("family",),
    "UDP sockets closed (sock_diag destroy events): DNS clients and other short-lived UDP users.",
)
FLOW_SUBSCRIBER_UP = Metric(
    "sockdiag_flow_subscriber_up", "gauge", (),
    "1 if the destroy-event subscriber of this network namespace is running, 0 if not (the kernel refused it; see "
    "the log): the flow counters then stand still.",
)
FLOW_EVENTS = Metric(
    "sockdiag_flow_events", "counter", (),
    "Destroy events received and decoded (every closed TCP and UDP socket, listeners included).",
)
FLOW_OVERRUNS = Metric(
    "sockdiag_flow_event_overruns", "counter", (),
    "Times the kernel dropped destroy events because the subscriber's receive buffer was full (ENOBUFS): the flow "
    "counters then miss connections. Raise flows.receive_buffer_bytes (and net.core.rmem_max when unprivileged).",
)
FLOW_MALFORMED = Metric(
    "sockdiag_flow_events_malformed", "counter", (),
    "Destroy events that could not be read (only served once there is one).",
)
HANDLER_AVAILABLE = Metric(
    "sockdiag_diag_handler_available", "gauge", ("family", "protocol"),
    "1 if this kernel has a sock_diag handler for the family and protocol, 0 if it has none.",
)
SOURCE_INFO = Metric(
    "sockdiag_socket_source_info", "gauge", ("family", "protocol", "source"),
    "Where the numbers for a family and protocol come from: sock_diag, or procfs where the diag handler is missing.",
)
COLLECTOR_DURATION = Metric(
    "sockdiag_scrape_collector_duration_seconds", "gauge", ("collector",),
    "Time a collector took in the last collection: its own wall time, summed over network namespaces (collectors "
    "run at once on collection.workers threads, so these overlap).",
)
COLLECTION_DURATION = Metric(
    "sockdiag_collection_duration_seconds", "gauge", (),
    "Wall time of the last collection. Collectors run at once (collection.workers), so it is less than the sum "
    "of sockdiag_scrape_collector_duration_seconds.",
)
COLLECTOR_SUCCESS = Metric(
    "sockdiag_scrape_collector_success", "gauge", ("collector",),
    "1 if the collector's last collection succeeded, 0 if it failed (its metrics are then absent).",
)
NETLINK_DUMPS = Metric(
    "sockdiag_netlink_dumps", "counter", (),
    "sock_diag dump requests sent to the kernel, retries included.",
)
NETLINK_DUMP_RETRIES = Metric(
    "sockdiag_netlink_dump_retries", "counter", (),
    "sock_diag dumps started again after an interrupted dump (NLM_F_DUMP_INTR) or a transient error.",
)
SERIES_DROPPED = Metric(
    "sockdiag_series_budget_dropped_series", "gauge", ("breakdown",),
    "Series left out of this scrape to stay within series_budget, per breakdown (most detailed dropped first).",
)
NETNS_INFO = Metric(
    "sockdiag_netns_info", "gauge", ("netns", "inode", "cgroup", "container", "pod_uid", "container_id"),
    "Always 1, per collected network namespace: its inode, and the cgroup of a process in it with what owns it "
    "(container: a pod, container or systemd unit; pod_uid: the Kubernetes pod UID as kube-state-metrics' uid; "
    "container_id: the full container id). Join on netns.",
)
NETNS_UP = Metric(
    "sockdiag_netns_up", "gauge", ("netns",),
    "1 if every collector succeeded in this network namespace, 0 if one failed there.",
)
NETNS_DISCOVERY = Metric(
    "sockdiag_netns_discovery_success", "gauge", ("source", "reason"),
    "1 if the configured source of network namespaces (named: /run/netns, processes: /proc) could be listed, 0 if "
    "not, with the reason (permission_denied, not_a_directory, not_found, error). The exporter's own namespace is "
    "collected either way.",
)
NETNS_CANNOT_ENTER = Metric(
    "sockdiag_netns_enter_failures", "gauge", ("reason",),
    "Network namespaces found but not entered in the last collection, by reason (permission_denied, "
    "not_a_network_namespace: a stale entry, error); only reasons that happened.",
)
NETNS_FOLDED = Metric(
    "sockdiag_netns_folded", "gauge", (),
    "Network namespaces beyond namespaces.max_namespaces, summed into netns=\"other\".",
)
FEATURE_ENABLED = Metric(
    "sockdiag_feature_enabled", "gauge", ("feature",),
    "1 if an optional feature is on; 0 if it is configured but off (missing capability, no cgroup v2: see the log).",
)
BUILD_INFO = Metric(
    "sockdiag_build_info", "gauge", ("version", "python_version"),
    "Always 1; labels carry the exporter and Python versions.",
)

HISTOGRAM_KINDS = frozenset(("histogram", "gaugehistogram"))  # value: ([(le, cumulative count)...], sum)

LISTENERS = (LISTENER_QUEUE_LENGTH, LISTENER_QUEUE_LIMIT, LISTENER_SOCKETS, LISTENERS_FOLDED, LISTENER_MAX_FILL,
             LISTENER_DROPS, LISTENER_HALF_OPEN)
RECEIVERS = (RECEIVER_QUEUE, RECEIVER_BUFFER, RECEIVER_DROPS, RECEIVER_SOCKETS, RECEIVERS_FOLDED)
DESTINATIONS = (EPHEMERAL_DESTINATION_USAGE, EPHEMERAL_DESTINATIONS_FOLDED)
PORT_GROUPS = (PORT_GROUP_SOCKETS, PORT_GROUP_RECEIVE_QUEUE, PORT_GROUP_SEND_QUEUE)
CGROUPS = (CGROUP_SOCKETS, CGROUP_RECEIVE_QUEUE, CGROUP_SEND_QUEUE)
HISTOGRAMS = (RECEIVE_QUEUE_HISTOGRAM, SEND_QUEUE_HISTOGRAM)
FLOWS = ((TCP_CLOSED,) + TCP_CLOSED_SUMS + (TCP_CLOSED_RTT, LISTENER_TCP_CLOSED) + LISTENER_TCP_CLOSED_BYTES
         + (PORT_GROUP_TCP_CLOSED,) + PORT_GROUP_TCP_CLOSED_BYTES + (UDP_CLOSED, FLOW_SUBSCRIBER_UP, FLOW_EVENTS,
                                                                     FLOW_OVERRUNS, FLOW_MALFORMED))

# The text format (0.0.4) has no gauge histogram: a gauge histogram's _gcount and _gsum are written there as gauges
# of their own, with this HELP (suffix, help) in that order, rather than with the parent's.
GAUGE_HISTOGRAM_PARTS = {
    metric.name: (
        ("_gcount", f"Data sockets (every socket but listeners) counted in {metric.name}, by the same labels."),
        ("_gsum", f"Sum of the {direction} queues of those data sockets, in bytes."),
    )
    for metric, direction in ((RECEIVE_QUEUE_HISTOGRAM, "receive"), (SEND_QUEUE_HISTOGRAM, "send"))
}
GAUGE_HISTOGRAM_PARTS.update({
    metric.name: (
        ("_gcount", f"Live TCP connections counted in {metric.name}, by the same labels (tcp_health)."),
        ("_gsum", f"Sum of their {what}, in seconds."),
    )
    for metric, what in ((LISTENER_HEALTH_RTT[0], "smoothed RTTs"), (LISTENER_HEALTH_RTT[1], "minimum RTTs"),
                         (PORT_GROUP_HEALTH_RTT[0], "smoothed RTTs"), (PORT_GROUP_HEALTH_RTT[1], "minimum RTTs"))
})

# The optional breakdowns in the order the series budget drops them: most detailed first.
BREAKDOWNS = (("ephemeral_destinations", DESTINATIONS),
              ("listeners", LISTENERS + (LISTENER_TCP_CLOSED,) + LISTENER_TCP_CLOSED_BYTES + LISTENER_HEALTH_RTT
               + LISTENER_HEALTH + LISTENER_TRAFFIC),
              ("udp_receivers", RECEIVERS), ("cgroups", CGROUPS),
              ("port_groups", PORT_GROUPS + (PORT_GROUP_TCP_CLOSED,) + PORT_GROUP_TCP_CLOSED_BYTES + PORT_GROUP_HEALTH_RTT
               + PORT_GROUP_HEALTH + PORT_GROUP_TRAFFIC),
              ("histograms", HISTOGRAMS + (TCP_CLOSED_RTT,)), ("memory", MEMORY))

ALL = (
    (SOCKETS, RECEIVE_QUEUE, SEND_QUEUE, ACCEPT_QUEUE_LENGTH, ACCEPT_QUEUE_LIMIT) + LISTENERS + RECEIVERS
    + HISTOGRAMS + MEMORY + PORT_GROUPS + CGROUPS + FLOWS + HEALTH
    + (TIMEWAIT_MINISOCKETS, TIMEWAIT_BUCKETS, EPHEMERAL_RANGE, EPHEMERAL_USAGE) + DESTINATIONS
    + (UDP_RECEIVE_BUFFER_ERRORS, UDP_RECEIVE_ERRORS, TCP_LISTEN_OVERFLOWS, TCP_LISTEN_DROPS, HANDLER_AVAILABLE,
       SOURCE_INFO, COLLECTOR_DURATION, COLLECTOR_SUCCESS, COLLECTION_DURATION, NETLINK_DUMPS, NETLINK_DUMP_RETRIES,
       SERIES_DROPPED, NETNS_INFO, NETNS_UP, NETNS_DISCOVERY, NETNS_CANNOT_ENTER, NETNS_FOLDED, FEATURE_ENABLED,
       BUILD_INFO)
)

# Metrics about the exporter itself: never broken down by network namespace.
EXPORTER = frozenset((COLLECTOR_DURATION, COLLECTOR_SUCCESS, COLLECTION_DURATION, NETLINK_DUMPS,
                      NETLINK_DUMP_RETRIES, SERIES_DROPPED, NETNS_INFO, NETNS_UP, NETNS_DISCOVERY, NETNS_CANNOT_ENTER,
                      NETNS_FOLDED, FEATURE_ENABLED, BUILD_INFO))
# Metrics served even when zero in sparse namespaces: a 0 there is news, not a placeholder.
KEEP_ZERO = frozenset((FLOW_SUBSCRIBER_UP,))
# Metrics whose samples, when several namespaces fold into "other", take the largest value instead of the sum:
# kernel-wide facts (left out of sparse namespaces), and ratios and sizes.
NOT_ADDITIVE = frozenset((HANDLER_AVAILABLE, SOURCE_INFO))
LARGEST = NOT_ADDITIVE | frozenset((LISTENER_MAX_FILL, EPHEMERAL_RANGE, EPHEMERAL_USAGE, EPHEMERAL_DESTINATION_USAGE))
