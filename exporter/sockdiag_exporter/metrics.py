"""Every metric the exporter serves: name, type, labels and help, in one place (README's table mirrors it)."""

from typing import NamedTuple, Tuple

SOCKET_LABELS = ("family", "socket_type", "protocol", "state")
LISTEN_LABELS = ("family", "socket_type", "protocol")
LISTENER_LABELS = ("family", "socket_type", "protocol", "address")
GROUP_LABELS = ("port_group", "family", "protocol", "state")


class Metric(NamedTuple):
    name: str
    kind: str  # "gauge", "counter" (name without _total) or "gaugehistogram"
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
RECEIVE_QUEUE_HISTOGRAM = Metric(
    "sockdiag_socket_receive_queue_bytes", "gaugehistogram", LISTEN_LABELS,
    "Distribution of the receive queues of data sockets (every socket but listeners), one count per socket.",
)
SEND_QUEUE_HISTOGRAM = Metric(
    "sockdiag_socket_send_queue_bytes", "gaugehistogram", LISTEN_LABELS,
    "Distribution of the send queues of data sockets (every socket but listeners), one count per socket.",
)
MEMORY = tuple(
    Metric(name, "gauge", SOCKET_LABELS, text + " Only for collectors listed in memory.collectors.")
    for name, text in (
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

LISTENERS = (LISTENER_QUEUE_LENGTH, LISTENER_QUEUE_LIMIT, LISTENER_SOCKETS, LISTENERS_FOLDED)
PORT_GROUPS = (PORT_GROUP_SOCKETS, PORT_GROUP_RECEIVE_QUEUE, PORT_GROUP_SEND_QUEUE)
CGROUPS = (CGROUP_SOCKETS, CGROUP_RECEIVE_QUEUE, CGROUP_SEND_QUEUE)
HISTOGRAMS = (RECEIVE_QUEUE_HISTOGRAM, SEND_QUEUE_HISTOGRAM)

# The text format (0.0.4) has no gauge histogram: a gauge histogram's _gcount and _gsum are written there as gauges
# of their own, with this HELP (suffix, help) in that order, rather than with the parent's.
GAUGE_HISTOGRAM_PARTS = {
    metric.name: (
        ("_gcount", f"Data sockets (every socket but listeners) counted in {metric.name}, by the same labels."),
        ("_gsum", f"Sum of the {direction} queues of those data sockets, in bytes."),
    )
    for metric, direction in ((RECEIVE_QUEUE_HISTOGRAM, "receive"), (SEND_QUEUE_HISTOGRAM, "send"))
}

# The optional breakdowns in the order the series budget drops them: most detailed first.
BREAKDOWNS = (("listeners", LISTENERS), ("cgroups", CGROUPS), ("port_groups", PORT_GROUPS),
              ("histograms", HISTOGRAMS), ("memory", MEMORY))

ALL = (
    (SOCKETS, RECEIVE_QUEUE, SEND_QUEUE, ACCEPT_QUEUE_LENGTH, ACCEPT_QUEUE_LIMIT) + LISTENERS + HISTOGRAMS + MEMORY
    + PORT_GROUPS + CGROUPS + (UDP_RECEIVE_BUFFER_ERRORS, UDP_RECEIVE_ERRORS, TCP_LISTEN_OVERFLOWS, TCP_LISTEN_DROPS,
                     HANDLER_AVAILABLE, SOURCE_INFO, COLLECTOR_DURATION, COLLECTOR_SUCCESS, COLLECTION_DURATION,
                     NETLINK_DUMPS, NETLINK_DUMP_RETRIES, SERIES_DROPPED, NETNS_INFO, NETNS_UP, NETNS_DISCOVERY,
                     NETNS_CANNOT_ENTER, NETNS_FOLDED, FEATURE_ENABLED, BUILD_INFO)
)

# Metrics about the exporter itself: never broken down by network namespace.
EXPORTER = frozenset((COLLECTOR_DURATION, COLLECTOR_SUCCESS, COLLECTION_DURATION, NETLINK_DUMPS,
                      NETLINK_DUMP_RETRIES, SERIES_DROPPED, NETNS_INFO, NETNS_UP, NETNS_DISCOVERY, NETNS_CANNOT_ENTER,
                      NETNS_FOLDED, FEATURE_ENABLED, BUILD_INFO))
# Metrics whose samples, when several namespaces fold into "other", take the largest value instead of the sum.
NOT_ADDITIVE = frozenset((HANDLER_AVAILABLE, SOURCE_INFO))
