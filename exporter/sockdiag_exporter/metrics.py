"""Every metric the exporter serves: name, type, labels and help, in one place (README's table mirrors it)."""

from typing import NamedTuple, Tuple

SOCKET_LABELS = ("family", "socket_type", "protocol", "state")
LISTEN_LABELS = ("family", "socket_type", "protocol")


class Metric(NamedTuple):
    name: str
    kind: str  # "gauge" or "counter" (name without _total)
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
    "Time a collector took in the last collection.",
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
BUILD_INFO = Metric(
    "sockdiag_build_info", "gauge", ("version", "python_version"),
    "Always 1; labels carry the exporter and Python versions.",
)

ALL = (
    SOCKETS, RECEIVE_QUEUE, SEND_QUEUE, ACCEPT_QUEUE_LENGTH, ACCEPT_QUEUE_LIMIT, HANDLER_AVAILABLE, SOURCE_INFO,
    COLLECTOR_DURATION, COLLECTOR_SUCCESS, NETLINK_DUMPS, NETLINK_DUMP_RETRIES, BUILD_INFO,
)
