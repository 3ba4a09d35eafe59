// Alerts, following the monitoring-mixins conventions: CamelCase names prefixed "Sockdiag", a severity label
// (warning or critical), and summary, description and runbook_url annotations. Thresholds are the
// sockdiag:threshold:* series of rules.libsonnet (load both groups): no number in an expression.
{
  prometheusAlerts+:: {
    local selector = $._config.sockdiagSelector,
    // Descriptions are written as text blocks and sent as one line.
    local oneLine(text) = std.strReplace(std.rstripChars(text, '\n'), '\n', ' '),
    local alert(name, severity, expr, forDuration, summary, description) = {
      alert: name,
      expr: expr,
      'for': forDuration,
      labels: { severity: severity },
      annotations: {
        summary: summary,
        description: oneLine(description),
        runbook_url: $._config.runbookURLPattern % std.asciiLower(name),
      },
    },

    groups+: [
      {
        name: 'sockdiag-alerts',
        rules: [
          alert(
            'SockdiagListenerAcceptQueueNearLimit', 'warning',
            |||
              instance_address:sockdiag_listener_accept_queue:fill_ratio
                > on() group_left() sockdiag:threshold:listener_fill_ratio
            |||,
            '10m',
            "A listener's accept queue is nearly full.",
            |||
              The accept queue of listener {{ $labels.address }} ({{ $labels.family }} {{ $labels.socket_type }})
              on {{ $labels.instance }} has been {{ $value | humanizePercentage }} full for 10 minutes: the application is not calling
              accept() fast enough, and new connections will be dropped once the queue is full.
            |||,
          ),
          alert(
            'SockdiagListenerDropping', 'critical',
            |||
              instance_address:sockdiag_listener_drops:rate5m
                > on() group_left() sockdiag:threshold:listener_drops_per_second
            |||,
            '10m',
            'A listener keeps dropping SYNs or connections.',
            |||
              Listener {{ $labels.address }} ({{ $labels.family }} {{ $labels.protocol }}) on {{ $labels.instance }} has
              dropped {{ $value | humanize }} SYNs or connections per second for 10 minutes: its accept queue (or its
              SYN queue) is full. Clients see slow or failed connects.
            |||,
          ),
          alert(
            'SockdiagTCPListenOverflows', 'critical',
            |||
              instance:sockdiag_tcp_listen_overflows:rate5m
                > on() group_left() sockdiag:threshold:listen_overflows_per_second
            |||,
            '10m',
            'TCP listeners are dropping connections because their accept queues overflow.',
            |||
              {{ $labels.instance }} has dropped {{ $value | humanize }} connections per second for 10 minutes
              because a listener's accept queue was full (TcpExt ListenOverflows). Clients see slow or failed
              connects.
            |||,
          ),
          alert(
            'SockdiagCloseWaitAccumulating', 'warning',
            |||
              instance_protocol_state:sockdiag_inet_sockets:sum{state="close_wait"}
                > on() group_left() sockdiag:threshold:close_wait_sockets
            |||,
            '15m',
            'Sockets are accumulating in CLOSE_WAIT.',
            |||
              {{ $labels.instance }} has had {{ $value | humanize }} {{ $labels.protocol }} sockets in CLOSE_WAIT
              for 15 minutes: peers closed these connections but the local application never closed its end
              (usually a descriptor leak). They hold file descriptors and memory until the process closes them.
            |||,
          ),
          alert(
            'SockdiagEphemeralPortsNearExhaustion', 'warning',
            |||
              sockdiag_ephemeral_port_usage_ratio{%s}
                > on() group_left() sockdiag:threshold:ephemeral_port_usage_ratio
            ||| % selector,
            '15m',
            'Outgoing TCP connections to one destination are running out of ephemeral ports.',
            |||
              On {{ $labels.instance }}, {{ $value | humanizePercentage }} of the ephemeral port range has been in use
              towards one {{ $labels.family }} destination (one local address, remote address and port: TIME_WAIT
              included) for 15 minutes. At 100% connect() to it fails with EADDRNOTAVAIL ("Cannot assign requested
              address").
            |||,
          ),
          alert(
            'SockdiagTimeWaitBucketsNearLimit', 'warning',
            |||
              instance:sockdiag_tcp_timewait_buckets:usage_ratio
                > on() group_left() sockdiag:threshold:kernel_limit_fraction
            |||,
            '10m',
            'TIME_WAIT minisockets approach net.ipv4.tcp_max_tw_buckets.',
            |||
              {{ $labels.instance }} has held {{ $value | humanizePercentage }} of net.ipv4.tcp_max_tw_buckets in
              TIME_WAIT minisockets (time_wait, and fin_wait2 after close) for 10 minutes. Past the limit the
              kernel skips TIME_WAIT for closing connections ("time wait bucket table overflow"): delayed segments
              of an old connection can then corrupt a new one with the same ports.
            |||,
          ),
          alert(
            'SockdiagReceiveQueueBacklog', 'warning',
            |||
              instance_family_protocol:sockdiag_socket_receive_queue_bytes:count_over_1mib
                > on() group_left() sockdiag:threshold:receive_queue_backlog_sockets
            |||,
            '15m',
            'Sockets have had more than 1 MiB unread in their receive queues for 15 minutes.',
            |||
              {{ $labels.instance }} has had {{ $value | humanize }}
              {{ $labels.family }}{{ with $labels.protocol }} {{ . }}{{ end }} sockets with more than 1 MiB waiting in their receive queue for 15 minutes: their applications read
              more slowly than data arrives, so senders are throttled or (UDP) datagrams are dropped.
            |||,
          ),
          alert(
            'SockdiagUDPReceiveBufferErrors', 'warning',
            |||
              instance_family_protocol:sockdiag_udp_receive_buffer_errors:rate5m
                > on() group_left() sockdiag:threshold:udp_receive_buffer_errors_per_second
            |||,
            '10m',
            'UDP datagrams are dropped because receive buffers are full.',
            |||
              {{ $labels.instance }} has dropped {{ $value | humanize }} {{ $labels.family }} {{ $labels.protocol }}
              datagrams per second for 10 minutes because a socket's receive buffer was full (RcvbufErrors): a
              receiver reads too slowly or its SO_RCVBUF is too small. The data is lost.
            |||,
          ),
          alert(
            'SockdiagUDPReceiverDropping', 'warning',
            |||
              instance_address:sockdiag_udp_receiver_drops:rate5m
                > on() group_left() sockdiag:threshold:udp_receiver_drops_per_second
            |||,
            '10m',
            'A UDP receiver keeps dropping datagrams.',
            |||
              The UDP receiver {{ $labels.address }} ({{ $labels.family }} {{ $labels.protocol }}) on
              {{ $labels.instance }} has dropped {{ $value | humanize }} datagrams per second for 10 minutes: its
              receive buffer is full (it reads too slowly, or SO_RCVBUF is too small). The data is lost.
            |||,
          ),
          alert(
            'SockdiagTCPOrphansNearLimit', 'warning',
            |||
              instance:sockdiag_tcp_orphan_states:sum
                > on() group_left()
              (sockdiag:threshold:tcp_max_orphans * sockdiag:threshold:kernel_limit_fraction)
            |||,
            '10m',
            "Closing TCP sockets approach the kernel's orphan limit.",
            |||
              {{ $labels.instance }} has had {{ $value | humanize }} TCP sockets in FIN_WAIT1, CLOSING or LAST_ACK
              for 10 minutes, near net.ipv4.tcp_max_orphans (sockdiag:threshold:tcp_max_orphans). Above
              the limit the kernel resets closing connections ("too many orphaned sockets").
            |||,
          ),
          alert(
            'SockdiagTCPConnectFailures', 'warning',
            |||
              instance:sockdiag_tcp_connect_failures:ratio_rate5m
                > on() group_left() sockdiag:threshold:tcp_connect_failure_ratio
              and
              instance:sockdiag_tcp_connects:rate5m
                > on() group_left() sockdiag:threshold:tcp_connections_closed_per_second
            |||,
            '10m',
            'Many outbound TCP connects fail.',
            |||
              For 10 minutes, {{ $value | humanizePercentage }} of the outbound TCP connects of {{ $labels.instance }}
              have failed: refused (nothing listens there, or a firewall rejects them) or unanswered (the peer or the
              path drops them). Clients see errors, or hang for their connect timeout.
            |||,
          ),
          alert(
            'SockdiagTCPRetransmissions', 'warning',
            |||
              instance:sockdiag_tcp_closed_retransmitted_segments:ratio_rate5m
                > on() group_left() sockdiag:threshold:tcp_retransmission_ratio
              and
              instance:sockdiag_tcp_connections_closed:rate5m
                > on() group_left() sockdiag:threshold:tcp_connections_closed_per_second
            |||,
            '15m',
            'TCP connections retransmit much of what they send.',
            |||
              The TCP connections that closed on {{ $labels.instance }} retransmitted {{ $value | humanizePercentage }}
              of the segments they sent over 15 minutes: packets are lost on the way (a congested or faulty link,
              a full queue, a flapping route). Throughput drops and latency rises.
            |||,
          ),
          alert(
            'SockdiagServiceRoundTripTimeRegression', 'warning',
            |||
              instance_address:sockdiag_listener_tcp_live_rtt_seconds:mean
                > instance_address:sockdiag_listener_tcp_live_rtt_seconds:mean_avg1d
                  * on() group_left() sockdiag:threshold:rtt_regression_factor
              and
              instance_address:sockdiag_listener_tcp_live_rtt_seconds:mean
                > on() group_left() sockdiag:threshold:rtt_regression_min_seconds
            |||,
            '15m',
            "A service's round-trip time rose well above its usual.",
            |||
              The live TCP connections of {{ $labels.address }} on {{ $labels.instance }} have a mean smoothed RTT
              of {{ $value | humanizeDuration }}, far above their average of the last day (rtt_regression_factor
              times): the network to its clients, or the clients themselves, got slower.
            |||,
          ),
          alert(
            'SockdiagServiceRetransmissionRegression', 'warning',
            |||
              instance_address:sockdiag_listener_tcp_live_retransmitted_segments:ratio
                > instance_address:sockdiag_listener_tcp_live_retransmitted_segments:ratio_avg1d
                  * on() group_left() sockdiag:threshold:retransmission_regression_factor
              and
              instance_address:sockdiag_listener_tcp_live_retransmitted_segments:ratio
                > on() group_left() sockdiag:threshold:tcp_retransmission_ratio
              and
              sockdiag_listener_tcp_live_sent_segments{%s}
                > on() group_left() sockdiag:threshold:tcp_health_min_sent_segments
            ||| % selector,
            '15m',
            'A service retransmits far more than usual.',
            |||
              The live TCP connections of {{ $labels.address }} on {{ $labels.instance }} retransmitted
              {{ $value | humanizePercentage }} of the segments they sent, far above their average of the last day
              (retransmission_regression_factor times): packets to or from its clients are lost on the way.
            |||,
          ),
          alert(
            'SockdiagCollectorFailed', 'warning',
            'sockdiag_scrape_collector_success{%s} == 0' % selector,
            '15m',
            'A sockdiag_exporter collector is failing.',
            |||
              The {{ $labels.collector }} collector of sockdiag_exporter on {{ $labels.instance }} has failed every
              collection for 15 minutes: its socket metrics are missing, so dashboards and alerts based on them
              are blind.
            |||,
          ),
          alert(
            'SockdiagExporterDown', 'warning',
            'up{%s} == 0' % selector,
            '5m',
            'sockdiag_exporter cannot be scraped.',
            |||
              Prometheus has failed to scrape sockdiag_exporter at {{ $labels.instance }} (job {{ $labels.job }})
              for 5 minutes: socket alerts for that host cannot fire.
            |||,
          ),
          alert(
            'SockdiagExporterAbsent', 'warning',
            'absent(up{%s})' % selector,
            '15m',
            'Prometheus has no sockdiag_exporter target.',
            |||
              No scrape target matching {%s} has existed for 15 minutes: service discovery or the scrape
              configuration lost the exporters, and no socket alert can fire.
            ||| % selector,
          ),
          alert(
            'SockdiagRecordingRulesMissing', 'warning',
            'absent(sockdiag:threshold:listener_fill_ratio)',
            '15m',
            'The sockdiag recording rules are not loaded.',
            |||
              The threshold series sockdiag:threshold:listener_fill_ratio has been absent for 15 minutes: rules.yml
              is not loaded next to alerts.yml, so the threshold-based sockdiag alerts can never fire.
            |||,
          ),
        ],
      },
    ],
  },
}
