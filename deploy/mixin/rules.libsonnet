// Recording rules: the thresholds the alerts compare against, and the aggregations the dashboards and the
// alerts compute again and again. Names follow level:metric:operations; every aggregation uses `without (...)`,
// so job, instance, netns and any other target labels (cluster, env, ...) are kept.
{
  prometheusRules+:: {
    local selector = $._config.sockdiagSelector,
    local threshold(name) = {
      record: 'sockdiag:threshold:' + name,
      // %.15g: the shortest form (0.8, not 0.80000000000000004), integers as written.
      expr: 'vector(%.15g)' % $._config.thresholds[name],
    },
    local rate5m(level, counter) = {
      record: '%s:%s:rate5m' % [level, counter],
      expr: 'rate(%s_total{%s}[5m])' % [counter, selector],
    },

    groups+: [
      {
        // One constant series per name: load this group once (twice with other labels breaks the
        // `on() group_left()` comparisons with "many-to-many matching").
        name: 'sockdiag-thresholds',
        rules: [threshold(name) for name in [
          'listener_fill_ratio',
          'listener_drops_per_second',
          'listen_overflows_per_second',
          'close_wait_sockets',
          'ephemeral_port_usage_ratio',
          'tcp_max_orphans',
          'kernel_limit_fraction',
          'receive_queue_backlog_sockets',
          'udp_receive_buffer_errors_per_second',
          'udp_receiver_drops_per_second',
          'tcp_connect_failure_ratio',
          'tcp_retransmission_ratio',
          'tcp_connections_closed_per_second',
          'rtt_regression_factor',
          'rtt_regression_min_seconds',
          'retransmission_regression_factor',
          'tcp_health_min_sent_segments',
        ]],
      },
      {
        name: 'sockdiag.rules',
        rules: [
          // Sockets per instance (every family, type, protocol and state), and per address family.
          {
            record: 'instance:sockdiag_sockets:sum',
            expr: 'sum without (family, socket_type, protocol, state) (sockdiag_sockets{%s})' % selector,
          },
          {
            record: 'instance_family:sockdiag_sockets:sum',
            expr: 'sum without (socket_type, protocol, state) (sockdiag_sockets{%s})' % selector,
          },
          // Internet sockets per instance, protocol and state, IPv4 and IPv6 together.
          {
            record: 'instance_protocol_state:sockdiag_inet_sockets:sum',
            expr: 'sum without (family, socket_type) (sockdiag_sockets{%s, family=~"inet|inet6"})' % selector,
          },
          // TCP sockets in the states an orphan (a socket its application has closed) is in: FIN_WAIT1,
          // CLOSING, LAST_ACK. An upper bound of the orphan count the kernel limits with
          // net.ipv4.tcp_max_orphans: a socket the application shut down but still holds is counted too.
          // Closed sockets in FIN_WAIT2 are not orphans: the kernel keeps them as TIME_WAIT-like minisockets.
          {
            record: 'instance:sockdiag_tcp_orphan_states:sum',
            expr: 'sum without (family, socket_type, protocol, state) '
                  + '(sockdiag_sockets{%s, protocol="tcp", state=~"fin_wait1|closing|last_ack"})' % selector,
          },
          // Receive and send queue bytes per instance, family and protocol (every state).
          {
            record: 'instance_family_protocol:sockdiag_receive_queue_bytes:sum',
            expr: 'sum without (socket_type, state) (sockdiag_receive_queue_bytes{%s})' % selector,
          },
          {
            record: 'instance_family_protocol:sockdiag_send_queue_bytes:sum',
            expr: 'sum without (socket_type, state) (sockdiag_send_queue_bytes{%s})' % selector,
          },
          // Fill ratio of the accept queue of each listening address's fullest socket (0.0 to 1.0; slightly
          // above 1.0 when full, as the kernel queues limit + 1; +Inf with a zero backlog and a connection
          // waiting). With SO_REUSEPORT it is the stuck socket's, not the group's average.
          {
            record: 'instance_address:sockdiag_listener_accept_queue:fill_ratio',
            expr: 'sockdiag_listener_accept_queue_max_fill_ratio{%s}' % selector,
          },
          // TIME_WAIT minisockets (time_wait, closed fin_wait2) as a share of net.ipv4.tcp_max_tw_buckets.
          {
            record: 'instance:sockdiag_tcp_timewait_buckets:usage_ratio',
            expr: |||
              sum without (family, state) (sockdiag_tcp_timewait_minisockets{%(s)s})
                / sockdiag_tcp_max_timewait_buckets{%(s)s}
            ||| % { s: selector },
          },
          // Data sockets with more than 1 MiB in their receive queue, from the queue-depth gauge histogram.
          // The le value is matched in both spellings ("1.048576e+06" from the exporter; "1048576" if
          // normalised).
          {
            record: 'instance_family_protocol:sockdiag_socket_receive_queue_bytes:count_over_1mib',
            expr: |||
              sum without (le, socket_type) (sockdiag_socket_receive_queue_bytes_bucket{%(s)s, le="+Inf"})
              - sum without (le, socket_type) (sockdiag_socket_receive_queue_bytes_bucket{%(s)s, le=~"1\\.048576e\\+06|1048576(\\.0)?"})
            ||| % { s: selector },
          },
          // Rates of the kernel's protocol counters (per network namespace).
          rate5m('instance', 'sockdiag_tcp_listen_overflows'),
          rate5m('instance', 'sockdiag_tcp_listen_drops'),
          rate5m('instance_family_protocol', 'sockdiag_udp_receive_buffer_errors'),
          rate5m('instance_family_protocol', 'sockdiag_udp_receive_errors'),
          // Per listening address and per UDP receiver: their sockets' drop counters.
          rate5m('instance_address', 'sockdiag_listener_drops'),
          rate5m('instance_address', 'sockdiag_udp_receiver_drops'),
          // Flows (closed TCP connections, from destroy events): connections closed per second, outbound connects
          // that ended per second, the share of those that failed (refused or unanswered: 0 when none did,
          // nothing without connects), and retransmitted segments per segment sent.
          {
            record: 'instance:sockdiag_tcp_connections_closed:rate5m',
            expr: 'sum without (family, direction, outcome) (rate(sockdiag_tcp_connections_closed_total{%s}[5m]))'
                  % selector,
          },
          {
            record: 'instance:sockdiag_tcp_connects:rate5m',
            expr: 'sum without (family, direction, outcome) '
                  + '(rate(sockdiag_tcp_connections_closed_total{%s, direction="outbound"}[5m]))' % selector,
          },
          {
            record: 'instance:sockdiag_tcp_connect_failures:ratio_rate5m',
            expr: |||
              (
                sum without (family, direction, outcome) (rate(sockdiag_tcp_connections_closed_total{%(s)s, direction="outbound", outcome=~"refused|unanswered"}[5m]))
                or
                sum without (family, direction, outcome) (rate(sockdiag_tcp_connections_closed_total{%(s)s, direction="outbound"}[5m])) * 0
              )
              / sum without (family, direction, outcome) (rate(sockdiag_tcp_connections_closed_total{%(s)s, direction="outbound"}[5m]))
            ||| % { s: selector },
          },
          {
            record: 'instance:sockdiag_tcp_closed_retransmitted_segments:ratio_rate5m',
            expr: |||
              sum without (family, direction) (rate(sockdiag_tcp_closed_retransmitted_segments_total{%(s)s}[5m]))
              / sum without (family, direction) (rate(sockdiag_tcp_closed_sent_segments_total{%(s)s}[5m]))
            ||| % { s: selector },
          },
          // TCP health (tcp_health.enabled): per listening address, the mean smoothed RTT of its live connections
          // and the share of the segments they sent that were retransmitted, each with its average of the last
          // day (the baseline the regression alerts compare with).
          {
            record: 'instance_address:sockdiag_listener_tcp_live_rtt_seconds:mean',
            expr: 'sockdiag_listener_tcp_live_rtt_seconds_gsum{%(s)s} / sockdiag_listener_tcp_live_rtt_seconds_gcount{%(s)s}'
                  % { s: selector },
          },
          {
            record: 'instance_address:sockdiag_listener_tcp_live_rtt_seconds:mean_avg1d',
            expr: 'avg_over_time(instance_address:sockdiag_listener_tcp_live_rtt_seconds:mean{%s}[1d])' % selector,
          },
          {
            record: 'instance_address:sockdiag_listener_tcp_live_retransmitted_segments:ratio',
            expr: 'sockdiag_listener_tcp_live_retransmitted_segments{%(s)s} / sockdiag_listener_tcp_live_sent_segments{%(s)s}'
                  % { s: selector },
          },
          {
            record: 'instance_address:sockdiag_listener_tcp_live_retransmitted_segments:ratio_avg1d',
            expr: 'avg_over_time(instance_address:sockdiag_listener_tcp_live_retransmitted_segments:ratio{%s}[1d])'
                  % selector,
          },
        ],
      },
    ],
  },
}
