// What a user of the mixin may change: override any key with
//   (import 'sockdiag-mixin/mixin.libsonnet') + { _config+:: { sockdiagSelector: 'job="sockdiag-exporter"' } }
{
  _config+:: {
    // Selects the exporter's series in every rule and alert (and `up` in the exporter alerts). Every shipped
    // scrape configuration yields job="sockdiag": deploy/prometheus/prometheus.example.yml,
    // deploy/kubernetes/prometheus-scrape.yml, and the ServiceMonitor in deploy/kubernetes/service.yaml.
    sockdiagSelector: 'job="sockdiag"',

    // Runbook links: %s is the alert's name in lower case (a heading of docs/runbooks.md). README states this URL;
    // the packages install the same file as /usr/share/doc/sockdiag-exporter/runbooks.md.
    runbookURLPattern: 'https://github.com/sockdiag-exporter/sockdiag-exporter/blob/main/docs/runbooks.md#%s',

    // Alert thresholds, recorded as sockdiag:threshold:<name> (one series each) that the alerts compare with
    // `> on() group_left()`; docs/runbooks.md has the table.
    thresholds: {
      // SockdiagListenerAcceptQueueNearLimit: fraction of the accept queue (length / limit) of a listening
      // address's fullest socket.
      listener_fill_ratio: 0.8,
      // SockdiagListenerDropping: SYNs or connections one listening address drops per second, 5-minute rate
      // (0: any drop).
      listener_drops_per_second: 0,
      // SockdiagTCPListenOverflows: accept-queue overflows per second, 5-minute rate (0: any overflow).
      listen_overflows_per_second: 0,
      // SockdiagCloseWaitAccumulating: sockets in CLOSE_WAIT per instance and protocol.
      close_wait_sockets: 100,
      // SockdiagEphemeralPortsNearExhaustion: share of the ephemeral port range in use towards the busiest
      // destination (the exporter reads each host's range and reserved ports).
      ephemeral_port_usage_ratio: 0.8,
      // SockdiagTCPOrphansNearLimit: net.ipv4.tcp_max_orphans. The kernel sizes it from memory at boot (often
      // 65536 or more); set it to `sysctl -n net.ipv4.tcp_max_orphans` of your smallest hosts.
      tcp_max_orphans: 65536,
      // SockdiagTCPOrphansNearLimit, SockdiagTimeWaitBucketsNearLimit: fraction of a kernel limit at which to
      // warn.
      kernel_limit_fraction: 0.8,
      // SockdiagReceiveQueueBacklog: sockets per instance/family/protocol with more than 1 MiB unread (the
      // 1 MiB is the histogram bucket bound 1048576, in the exporter's histograms.buckets by default).
      receive_queue_backlog_sockets: 0,
      // SockdiagUDPReceiveBufferErrors: datagrams dropped per second for a full receive buffer (0: any).
      udp_receive_buffer_errors_per_second: 0,
      // SockdiagUDPReceiverDropping: datagrams one UDP receiver (local address) drops per second (0: any).
      udp_receiver_drops_per_second: 0,
      // SockdiagTCPConnectFailures: share of outbound TCP connects that failed (refused or unanswered), 5m rate.
      tcp_connect_failure_ratio: 0.1,
      // SockdiagTCPRetransmissions: retransmitted segments per segment sent, over closed TCP connections, 5m rate.
      tcp_retransmission_ratio: 0.02,
      // Both: the least connections closing per second (outbound ones for SockdiagTCPConnectFailures) for a ratio
      // to mean anything; below it the alerts stay quiet.
      tcp_connections_closed_per_second: 1,
      // SockdiagServiceRoundTripTimeRegression: how many times its average of the last day a listening address's mean live
      // RTT (tcp_health) must be, and the least mean RTT that counts (below it, loopback and LAN noise).
      rtt_regression_factor: 2,
      rtt_regression_min_seconds: 0.01,
      // SockdiagServiceRetransmissionRegression: how many times its average of the last day a listening address's
      // retransmitted-per-sent ratio over its live connections must be (and above tcp_retransmission_ratio), with
      // at least this many segments sent by those connections.
      retransmission_regression_factor: 2,
      tcp_health_min_sent_segments: 1000,
    },
  },
}
