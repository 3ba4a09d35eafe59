#!/usr/bin/env python3
"""Generate the Grafana dashboards of sockdiag_exporter: grafana/dashboards/*.json.

Plain Python (standard library only); the output is deterministic, so regenerating must change nothing
(tests/test_dashboards.py checks). Edit this file, never the JSON, then run:

    python3 grafana/generate.py              # rewrite grafana/dashboards/
    python3 grafana/generate.py --out DIR    # write elsewhere
    python3 grafana/generate.py --check      # exit 1 if the committed JSON is out of date

The dashboards target Grafana 10+ (schemaVersion 39) and a Prometheus data source chosen with the
"datasource" variable. Queries use the recording rules of deploy/prometheus/rules.yml where one exists.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "dashboards")

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Every query filters on the job and instance variables (multi-value: regex match).
SEL = 'job=~"$job", instance=~"$instance"'
TAGS = ["sockdiag", "sockets"]


# --- Panels ---------------------------------------------------------------------------------------------------

def target(expr, legend="", instant=False, fmt="time_series"):
    t = {"datasource": DATASOURCE, "editorMode": "code", "expr": expr, "legendFormat": legend, "range": not instant,
         "instant": instant}
    if fmt != "time_series":
        t["format"] = fmt
    return t


def thresholds(*steps):
    """steps: (value or None, color) pairs, the first value None (base)."""
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


GREEN = ((None, "green"),)


def field_config(unit, *, steps=GREEN, minimum=None, maximum=None, custom=None, mappings=None, overrides=()):
    defaults = {"unit": unit, "color": {"mode": "palette-classic"}, "thresholds": thresholds(*steps),
                "mappings": mappings or []}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if custom is not None:
        defaults["custom"] = custom
    return {"defaults": defaults, "overrides": list(overrides)}


def dashed(name_regex):
    """Override: series whose name matches drawn as a dashed red line without fill (limits and thresholds)."""
    return {"matcher": {"id": "byRegexp", "options": name_regex},
            "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                           {"id": "custom.fillOpacity", "value": 0},
                           {"id": "custom.stacking", "value": {"group": "A", "mode": "none"}},
                           {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}]}


def timeseries(title, description, targets, unit, *, stack=False, minimum=0, steps=GREEN, threshold_line=False,
               overrides=(), legend_table=False):
    custom = {"drawStyle": "line", "lineInterpolation": "linear", "lineWidth": 1,
              "fillOpacity": 20 if stack else 10, "gradientMode": "none", "showPoints": "never",
              "spanNulls": False, "axisPlacement": "auto", "axisSoftMin": minimum,
              "stacking": {"group": "A", "mode": "normal" if stack else "none"},
              "thresholdsStyle": {"mode": "line+area" if threshold_line else "off"}}
    return {
        "type": "timeseries", "title": title, "description": description, "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": field_config(unit, steps=steps, custom=custom, overrides=overrides),
        "options": {"legend": {"showLegend": True, "displayMode": "table" if legend_table else "list",
                               "placement": "bottom", "calcs": ["lastNotNull", "max"] if legend_table else []},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def stat(title, description, expr, unit, *, steps=GREEN, mappings=None):
    return {
        "type": "stat", "title": title, "description": description, "datasource": DATASOURCE,
        "targets": [target(expr)],
        "fieldConfig": field_config(unit, steps=steps, mappings=mappings),
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "area", "justifyMode": "auto", "orientation": "auto",
                    "textMode": "auto"},
    }


def bargauge(title, description, expr, legend, unit, *, steps=GREEN, maximum=None):
    return {
        "type": "bargauge", "title": title, "description": description, "datasource": DATASOURCE,
        "targets": [target(expr, legend, instant=True)],
        "fieldConfig": field_config(unit, steps=steps, minimum=0, maximum=maximum),
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                    "valueMode": "color", "namePlacement": "auto", "sizing": "auto", "minVizHeight": 16,
                    "maxVizHeight": 300},
    }



def fullest_listeners(description: str) -> dict:
    """The top-10 fill-ratio bar gauge both dashboards show."""
    return bargauge("Fullest listeners", description,
                    f"topk(10, instance_address:sockdiag_listener_accept_queue:fill_ratio{{{SEL}}})",
                    "{{instance}} {{address}}", "percentunit",
                    steps=((None, "green"), (0.8, "orange"), (1, "red")), maximum=1)

def table(title, description, expr, unit, *, mappings=None, steps=GREEN, hide=()):
    return {
        "type": "table", "title": title, "description": description, "datasource": DATASOURCE,
        "targets": [target(expr, instant=True, fmt="table")],
        "fieldConfig": field_config(unit, steps=steps, mappings=mappings,
                                    custom={"align": "auto", "cellOptions": {"type": "color-text"}}),
        "options": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"]}},
        "transformations": [{"id": "organize", "options": {
            "excludeByName": {name: True for name in ("Time", "__name__", *hide)}}}],
    }


def state_timeline(title, description, expr, legend, unit, mappings):
    return {
        "type": "state-timeline", "title": title, "description": description, "datasource": DATASOURCE,
        "targets": [target(expr, legend)],
        "fieldConfig": field_config(unit, mappings=mappings, custom={"fillOpacity": 70, "lineWidth": 0}),
        "options": {"showValue": "never", "mergeValues": True, "alignValue": "left", "rowHeight": 0.9,
                    "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom"},
                    "tooltip": {"mode": "single", "sort": "none"}},
    }


def heatmap(title, description, selector):
    """A heatmap of a gauge histogram: the current per-socket distribution over time (buckets are cumulative,
    Grafana takes the differences)."""
    return {
        "type": "heatmap", "title": title, "description": description, "datasource": DATASOURCE,
        "targets": [target(f"sum by (le) ({selector})", "{{le}}", fmt="heatmap")],
        "fieldConfig": field_config("short", custom={"scaleDistribution": {"type": "linear"},
                                                     "hideFrom": {"legend": False, "tooltip": False, "viz": False}}),
        "options": {"calculate": False, "yAxis": {"axisPlacement": "left", "unit": "bytes", "reverse": False},
                    "rowsFrame": {"layout": "le"}, "cellValues": {"unit": "short"},
                    "color": {"mode": "scheme", "scheme": "Oranges", "scale": "exponential", "exponent": 0.5,
                              "steps": 64, "fill": "dark-orange", "reverse": False},
                    "filterValues": {"le": 1e-9}, "showValue": "never", "cellGap": 1,
                    "tooltip": {"show": True, "yHistogram": False}, "legend": {"show": True},
                    "exemplars": {"color": "rgba(255,0,255,0.7)"}},
    }


BOOL_MAPPINGS = [{"type": "value", "options": {"0": {"text": "failed", "color": "red", "index": 0},
                                               "1": {"text": "ok", "color": "green", "index": 1}}}]


# --- Dashboard layout -----------------------------------------------------------------------------------------

class Dashboard:
    """Places panels left to right in rows of 24 columns, numbering them; rows start a new line."""

    def __init__(self, uid, title, description, variables):
        self.uid, self.title, self.description, self.variables = uid, title, description, variables
        self.panels = []
        self.x = self.y = 0
        self.line_height = 0

    def _newline(self):
        if self.x:
            self.y += self.line_height
            self.x = self.line_height = 0

    def row(self, title, repeat=None):
        self._newline()
        panel = {"type": "row", "title": title, "collapsed": False, "panels": [],
                 "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}}
        if repeat:
            panel["repeat"] = repeat
        self._append(panel)
        self.y += 1

    def add(self, panel, w, h):
        if self.x + w > 24:
            self._newline()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self._append(panel)
        self.x += w
        self.line_height = max(self.line_height, h)

    def _append(self, panel):
        panel["id"] = len(self.panels) + 1
        self.panels.append(panel)

    def render(self):
        return {
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
                "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
                "type": "dashboard"}]},
            "description": self.description,
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "id": None,
            "links": [{"title": "sockdiag dashboards", "type": "dashboards", "tags": ["sockdiag"],
                       "asDropdown": True, "includeVars": True, "keepTime": True, "icon": "external link",
                       "targetBlank": False, "tooltip": "", "url": ""}],
            "panels": self.panels,
            "refresh": "30s",
            "schemaVersion": SCHEMA_VERSION,
            "tags": TAGS,
            "templating": {"list": self.variables},
            "time": {"from": "now-6h", "to": "now"},
            "timepicker": {},
            "timezone": "browser",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
            "weekStart": "",
        }


# --- Variables ------------------------------------------------------------------------------------------------

def datasource_variable():
    return {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1,
            "regex": "", "skipUrlSync": False}


def query_variable(name, label, query, *, multi, include_all=False):
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "definition": query, "query": {"query": query, "refId": "StandardVariableQuery"},
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all else {},
            "hide": 0, "includeAll": include_all, "multi": multi, "options": [], "refresh": 2, "regex": "",
            "skipUrlSync": False, "sort": 1}


def common_variables():
    return [
        datasource_variable(),
        query_variable("job", "Job", "label_values(sockdiag_build_info, job)", multi=False),
        query_variable("instance", "Instance", 'label_values(sockdiag_build_info{job=~"$job"}, instance)',
                       multi=True, include_all=True),
    ]


# --- Sockets overview -----------------------------------------------------------------------------------------

def inet(extra):
    return f'instance_protocol_state:sockdiag_inet_sockets:sum{{{SEL}, {extra}}}'


def overview():
    variables = common_variables() + [query_variable(
        "port_group", "Port group",
        f'label_values(sockdiag_port_group_sockets{{{SEL}}}, port_group)', multi=True, include_all=True)]
    d = Dashboard("sockdiag-overview", "Sockets overview",
                  "Every socket of the selected hosts from sockdiag_exporter: counts by family, protocol and state, "
                  "queues, memory and drops, listeners, port groups, and the exporter's own health.", variables)

    d.row("Summary")
    d.add(stat("Sockets", "All sockets of every family on the selected instances. Bad: a steady climb that does "
               "not follow traffic (a leak), or a sudden jump.",
               f"sum(instance:sockdiag_sockets:sum{{{SEL}}})", "short"), 4, 4)
    d.add(stat("TCP established", "Established TCP connections (IPv4 and IPv6). Bad: a drop to zero on a "
               "server, or growth far beyond normal load.",
               "sum(" + inet('protocol="tcp", state="established"') + ")", "short"), 4, 4)
    d.add(stat("TCP TIME_WAIT", "TCP sockets in TIME_WAIT. Bad: close to the ephemeral port range size (28232 by "
               "default; alert SockdiagTimeWaitNearPortRange).",
               "sum(" + inet('protocol="tcp", state="time_wait"') + ")", "short"), 4, 4)
    d.add(stat("CLOSE_WAIT sockets", "TCP (and MPTCP, DCCP) sockets whose peer closed but the application did not. "
               "Bad: anything that keeps growing; the alert SockdiagCloseWaitAccumulating fires above 100 per "
               "instance for 15m.",
               "sum(" + inet('state="close_wait"') + ")", "short",
               steps=((None, "green"), (100, "orange"))), 4, 4)
    d.add(stat("Fullest listener", "The highest accept-queue fill (length / limit) of any listening address. "
               "Bad: above 80% (the application does not accept() fast enough); 100% means connections "
               "are dropped.",
               f"max(instance_address:sockdiag_listener_accept_queue:fill_ratio{{{SEL}}})", "percentunit",
               steps=((None, "green"), (0.8, "orange"), (1, "red"))), 4, 4)
    d.add(stat("Failing collectors", "Exporter collectors whose last collection failed (their metrics are "
               "missing). Bad: anything but 0.",
               f"count(sockdiag_scrape_collector_success{{{SEL}}} == 0) or vector(0)", "short",
               steps=((None, "green"), (1, "red"))), 4, 4)

    d.row("Sockets by family, protocol and state")
    d.add(timeseries("Sockets by family", "Sockets per address family (inet, inet6, unix, netlink, packet, ...). "
                     "Bad: a family growing without bound, such as unix sockets leaked by a process.",
                     [target(f"sum by (family) (instance_family:sockdiag_sockets:sum{{{SEL}}})", "{{family}}")],
                     "short", stack=True), 12, 8)
    d.add(timeseries("Sockets by protocol", "Sockets per family and protocol (for netlink the netlink protocol, "
                     "for packet the ethertype). Bad: unexpected growth of one protocol.",
                     [target(f"sum by (family, protocol) (sockdiag_sockets{{{SEL}}})", "{{family}} {{protocol}}")],
                     "short", legend_table=True), 12, 8)
    d.add(timeseries("TCP sockets by state", "TCP sockets (IPv4 and IPv6) per state, stacked. Bad: CLOSE_WAIT "
                     "or SYN_RECV growing, FIN_WAIT1/LAST_ACK piling up, TIME_WAIT near the port range.",
                     [target("sum by (state) (" + inet('protocol="tcp"') + ")", "{{state}}")],
                     "short", stack=True, legend_table=True), 12, 8)
    d.add(timeseries("UDP sockets by state", "UDP and UDP-Lite sockets: established (connected) and "
                     "unconnected. Bad: growth that does not follow the workload (leaked sockets).",
                     [target("sum by (protocol, state) (" + inet('protocol=~"udp|udplite"') + ")",
                             "{{protocol}} {{state}}")], "short", stack=True), 6, 8)
    d.add(timeseries("Unix sockets by type and state", "Unix-domain sockets per type and state. Bad: steady "
                     "growth (a process leaking connections to a local daemon).",
                     [target(f'sum by (socket_type, state) (sockdiag_sockets{{{SEL}, family="unix"}})',
                             "{{socket_type}} {{state}}")], "short", stack=True), 6, 8)
    d.add(timeseries("TIME_WAIT and the ephemeral port range", "TCP TIME_WAIT sockets per instance against the "
                     "alert threshold (port range size x fraction, from the recording rules). Bad: the line "
                     "approaching the dashed threshold: outgoing connects start failing with EADDRNOTAVAIL.",
                     [target("sum by (instance) (" + inet('protocol="tcp", state="time_wait"') + ")",
                             "{{instance}}"),
                      target("sockdiag:threshold:ephemeral_port_range_size * "
                             "sockdiag:threshold:time_wait_port_range_fraction", "alert threshold")],
                     "short", overrides=[dashed("alert threshold")]), 8, 8)
    d.add(timeseries("CLOSE_WAIT per instance", "Sockets in CLOSE_WAIT per instance and protocol against the alert "
                     "threshold. Bad: a line that only goes up (the application never closes them).",
                     [target("sum by (instance, protocol) (" + inet('state="close_wait"') + ")",
                             "{{instance}} {{protocol}}"),
                      target("sockdiag:threshold:close_wait_sockets", "alert threshold")],
                     "short", overrides=[dashed("alert threshold")]), 8, 8)
    d.add(timeseries("TCP orphans (FIN_WAIT1, CLOSING, LAST_ACK)", "TCP sockets in the states orphans are in "
                     "(an upper bound of the kernel's orphan count) against 80% of the assumed "
                     "net.ipv4.tcp_max_orphans. Bad: approaching the threshold: the kernel then resets closing "
                     "connections.",
                     [target(f"sum by (instance) (instance:sockdiag_tcp_orphan_states:sum{{{SEL}}})", "{{instance}}"),
                      target("sockdiag:threshold:tcp_max_orphans * sockdiag:threshold:kernel_limit_fraction",
                             "alert threshold")],
                     "short", overrides=[dashed("alert threshold")]), 8, 8)

    d.row("Queues")
    d.add(timeseries("Receive queue bytes", "Sum of receive queues of data sockets (listeners excluded) per "
                     "family and protocol: unread bytes for TCP and unix streams, queued memory for UDP, raw, "
                     "netlink, packet. Bad: a sustained rise: readers are not keeping up.",
                     [target(f"sum by (family, protocol) (instance_family_protocol:sockdiag_receive_queue_bytes:sum"
                             f"{{{SEL}}})", "{{family}} {{protocol}}")], "bytes", legend_table=True), 12, 8)
    d.add(timeseries("Send queue bytes", "Sum of send queues per family and protocol: unacknowledged bytes for "
                     "TCP, memory of unsent or unread data elsewhere. Bad: a sustained rise: peers or the "
                     "network are not keeping up.",
                     [target(f"sum by (family, protocol) (instance_family_protocol:sockdiag_send_queue_bytes:sum"
                             f"{{{SEL}}})", "{{family}} {{protocol}}")], "bytes", legend_table=True), 12, 8)
    d.add(heatmap("TCP receive queue depth", "How many TCP data sockets have how many unread bytes (per-socket "
                  "gauge histogram). Bad: sockets moving into the upper buckets (above 1 MiB: alert "
                  "SockdiagReceiveQueueBacklog).",
                  f'sockdiag_socket_receive_queue_bytes_bucket{{{SEL}, protocol="tcp"}}'), 8, 8)
    d.add(heatmap("TCP send queue depth", "How many TCP data sockets have how many unacknowledged bytes. Bad: "
                  "many sockets in the upper buckets: slow peers or a congested path.",
                  f'sockdiag_socket_send_queue_bytes_bucket{{{SEL}, protocol="tcp"}}'), 8, 8)
    d.add(heatmap("UDP receive queue depth", "How many UDP and UDP-Lite sockets hold how much queued datagram "
                  "memory. Bad: sockets in the upper buckets: a full buffer drops datagrams.",
                  f'sockdiag_socket_receive_queue_bytes_bucket{{{SEL}, protocol=~"udp|udplite"}}'), 8, 8)
    d.add(timeseries("Sockets with more than 1 MiB unread", "Data sockets whose receive queue holds more than "
                     "1 MiB, per instance, family and protocol. Bad: any that stay for minutes (alert "
                     "SockdiagReceiveQueueBacklog after 15m).",
                     [target("sum by (instance, family, protocol) "
                             f"(instance_family_protocol:sockdiag_socket_receive_queue_bytes:count_over_1mib{{{SEL}}})",
                             "{{instance}} {{family}} {{protocol}}")], "short"), 12, 8)
    d.add(timeseries("Unread bytes in established TCP connections", "Receive queue bytes of established TCP "
                     "connections per instance. Bad: a sustained rise on one instance: its applications read "
                     "too slowly.",
                     [target(f'sum by (instance) (sockdiag_receive_queue_bytes{{{SEL}, protocol="tcp", '
                             'state="established"})', "{{instance}}")], "bytes"), 12, 8)

    d.row("Memory and drops")
    d.add(timeseries("Receive memory", "Memory held by received data (SK_MEMINFO rmem_alloc) per family and "
                     "protocol, for the collectors in memory.collectors. Bad: sustained growth.",
                     [target(f"sum by (family, protocol) (sockdiag_receive_memory_bytes{{{SEL}}})",
                             "{{family}} {{protocol}}")], "bytes"), 8, 8)
    d.add(timeseries("Receive memory / receive buffer", "Receive memory as a share of the summed receive buffer "
                     "limits (SO_RCVBUF) per family and protocol. Bad: near 100%: sockets are about to drop "
                     "incoming packets.",
                     [target(f"sum by (family, protocol) (sockdiag_receive_memory_bytes{{{SEL}}}) / "
                             f"sum by (family, protocol) (sockdiag_receive_buffer_bytes{{{SEL}}})",
                             "{{family}} {{protocol}}")], "percentunit"), 8, 8)
    d.add(timeseries("Send memory", "Memory held by data being sent (wmem_alloc) and by send queues "
                     "(wmem_queued) per family and protocol. Bad: sustained growth: receivers or the network "
                     "are slow.",
                     [target(f"sum by (family, protocol) (sockdiag_send_memory_bytes{{{SEL}}})",
                             "{{family}} {{protocol}} allocated"),
                      target(f"sum by (family, protocol) (sockdiag_send_queued_memory_bytes{{{SEL}}})",
                             "{{family}} {{protocol}} queued")], "bytes"), 8, 8)
    d.add(timeseries("Reserved, option and backlog memory", "Forward-allocated memory, socket option memory "
                     "and memory of packets in socket backlogs. Bad: backlog memory that stays above zero: "
                     "packets arrive while the socket is busy faster than it drains them.",
                     [target(f"sum by (protocol) (sockdiag_forward_alloc_bytes{{{SEL}}})", "{{protocol}} fwd_alloc"),
                      target(f"sum by (protocol) (sockdiag_option_memory_bytes{{{SEL}}})", "{{protocol}} optmem"),
                      target(f"sum by (protocol) (sockdiag_backlog_bytes{{{SEL}}})", "{{protocol}} backlog")],
                     "bytes"), 8, 8)
    d.add(timeseries("UDP receive errors", "Datagrams dropped per second because a receive buffer was full "
                     "(RcvbufErrors), and all undelivered datagrams (InErrors). Bad: anything above zero for "
                     "long: data loss (alert SockdiagUDPReceiveBufferErrors).",
                     [target(f"sum by (instance, family, protocol) (rate(sockdiag_udp_receive_buffer_errors_total"
                             f"{{{SEL}}}[$__rate_interval]))", "{{instance}} {{family}} {{protocol}} buffer full"),
                      target(f"sum by (instance, family, protocol) (rate(sockdiag_udp_receive_errors_total"
                             f"{{{SEL}}}[$__rate_interval]))", "{{instance}} {{family}} {{protocol}} all errors")],
                     "pps"), 8, 8)
    d.add(timeseries("Dropped packets on live sockets", "Sum of the lifetime drop counters of the sockets open "
                     "now (SK_MEMINFO drops), per family, protocol and state. A gauge: it falls when sockets "
                     "close. Bad: a rising line: a live socket is dropping packets.",
                     [target(f"sum by (family, protocol, state) (sockdiag_dropped_packets{{{SEL}}})",
                             "{{family}} {{protocol}} {{state}}")], "short"), 8, 8)

    d.row("Listeners")
    d.add(fullest_listeners("The 10 listening addresses with the fullest accept queues (length / limit). Bad: "
                            "above 80%: the application is not accepting fast enough; at 100% new connections "
                            "are dropped. Details per address on the Listeners dashboard."), 12, 8)
    d.add(timeseries("Accept queues by protocol", "Connections waiting for accept() summed over all listeners, "
                     "and the summed limits, per family and protocol. Bad: the waiting line rising towards "
                     "the dashed limit.",
                     [target(f"sum by (family, protocol) (sockdiag_accept_queue_length{{{SEL}}})",
                             "{{family}} {{protocol}} waiting"),
                      target(f"sum by (family, protocol) (sockdiag_accept_queue_limit{{{SEL}}})",
                             "{{family}} {{protocol}} limit")], "short", overrides=[dashed(".* limit")]), 12, 8)
    d.add(timeseries("TCP listen overflows and drops", "Connections per second the kernel dropped because an "
                     "accept queue was full (ListenOverflows), and all listener drops (ListenDrops). Bad: "
                     "anything above zero: clients see slow or failed connects (alert "
                     "SockdiagTCPListenOverflows).",
                     [target(f"sum by (instance) (rate(sockdiag_tcp_listen_overflows_total{{{SEL}}}"
                             "[$__rate_interval]))", "{{instance}} overflows"),
                      target(f"sum by (instance) (rate(sockdiag_tcp_listen_drops_total{{{SEL}}}"
                             "[$__rate_interval]))", "{{instance}} drops")], "cps"), 12, 8)
    d.add(timeseries("Listeners folded into address=\"other\"", "Listening sockets beyond listeners.max_series, "
                     "summed into address=\"other\" instead of reported one by one. Bad: above zero if you need "
                     "every listener individually: raise listeners.max_series.",
                     [target(f"sum by (instance, family, protocol) (sockdiag_listeners_folded{{{SEL}}})",
                             "{{instance}} {{family}} {{protocol}}")], "short"), 12, 8)

    group = f'{SEL}, port_group=~"$port_group"'
    d.row("Port groups")
    d.add(timeseries("Sockets per port group", "Sockets whose local or remote port is in a configured port group "
                     "(port_groups in the exporter config), per protocol and state. Empty without port groups. "
                     "Bad: a group's CLOSE_WAIT or SYN_RECV growing, or its established count collapsing.",
                     [target(f"sum by (port_group, protocol, state) (sockdiag_port_group_sockets{{{group}}})",
                             "{{port_group}} {{protocol}} {{state}}")], "short", legend_table=True), 8, 8)
    d.add(timeseries("Port group receive queues", "Receive queue bytes of each port group's data sockets. Bad: "
                     "a sustained rise: that service reads too slowly.",
                     [target(f"sum by (port_group, protocol) (sockdiag_port_group_receive_queue_bytes{{{group}}})",
                             "{{port_group}} {{protocol}}")], "bytes"), 8, 8)
    d.add(timeseries("Port group send queues", "Send queue bytes of each port group's data sockets. Bad: a "
                     "sustained rise: that service's peers (or the network to them) are slow.",
                     [target(f"sum by (port_group, protocol) (sockdiag_port_group_send_queue_bytes{{{group}}})",
                             "{{port_group}} {{protocol}}")], "bytes"), 8, 8)

    d.row("Exporter health")
    d.add(state_timeline("Collectors", "Whether each collector's last collection succeeded. Bad: red (failed): "
                         "that collector's socket metrics are missing (alert SockdiagCollectorFailed).",
                         f"min by (collector) (sockdiag_scrape_collector_success{{{SEL}}})", "{{collector}}",
                         "none", BOOL_MAPPINGS), 12, 8)
    d.add(timeseries("Collector durations", "Time each collector took in its last collection (slowest "
                     "instance). Bad: approaching the scrape timeout, or netlink.timeout_seconds.",
                     [target(f"max by (collector) (sockdiag_scrape_collector_duration_seconds{{{SEL}}})",
                             "{{collector}}")], "s", stack=True), 12, 8)
    d.add(timeseries("Scrape duration", "How long Prometheus took to scrape each exporter (every collector plus "
                     "HTTP). Bad: approaching the job's scrape_timeout: scrapes then fail (alert "
                     "SockdiagExporterDown).",
                     [target(f"scrape_duration_seconds{{{SEL}}}", "{{instance}}")], "s"), 8, 8)
    d.add(stat("Targets down", "Exporter targets Prometheus could not scrape at the last attempt. Bad: anything "
               "but 0.", f"count(up{{{SEL}}} == 0) or vector(0)", "short",
               steps=((None, "green"), (1, "red"))), 4, 8)
    d.add(stat("Missing diag handlers", "Family/protocol pairs this kernel has no sock_diag handler for: they "
               "are not reported (raw sockets are then read from /proc). Bad: a protocol you use, such as "
               "sctp, listed as missing in the table.",
               f"count(sockdiag_diag_handler_available{{{SEL}}} == 0) or vector(0)", "short"), 4, 8)
    d.add(table("Diag handlers", "1 (ok) if the kernel answers sock_diag dumps for the family and protocol, 0 "
                "(failed) if it has no handler. Bad: 0 for a protocol in use: its sockets are invisible.",
                f"sort(sockdiag_diag_handler_available{{{SEL}}})", "none",
                mappings=[{"type": "value", "options": {"0": {"text": "missing", "color": "orange", "index": 0},
                                                        "1": {"text": "ok", "color": "green", "index": 1}}}]), 8, 8)
    d.add(timeseries("Netlink dumps and retries", "sock_diag dump requests per second and those started again "
                     "after an interrupted dump or a transient error. Bad: retries close to the dump rate: heavy "
                     "socket churn or too small netlink.receive_buffer_bytes.",
                     [target(f"sum by (instance) (rate(sockdiag_netlink_dumps_total{{{SEL}}}[$__rate_interval]))",
                             "{{instance}} dumps"),
                      target(f"sum by (instance) (rate(sockdiag_netlink_dump_retries_total{{{SEL}}}"
                             "[$__rate_interval]))", "{{instance}} retries")], "ops"), 8, 8)
    d.add(timeseries("Series left out by series_budget", "Series dropped from each scrape to stay within "
                     "series_budget, per breakdown (only with series_budget set). Bad: above zero when you "
                     "need that breakdown: raise the budget.",
                     [target(f"sum by (instance, breakdown) (sockdiag_series_budget_dropped_series{{{SEL}}})",
                             "{{instance}} {{breakdown}}")], "short"), 8, 8)
    d.add(timeseries("Exporter resident memory", "Resident memory of the exporter process. Bad: memory that "
                     "grows over days (it stays flat whatever the socket count).",
                     [target(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}} resident memory")],
                     "bytes"), 8, 8)
    return d


# --- Listeners ------------------------------------------------------------------------------------------------

def listeners():
    variables = common_variables() + [query_variable(
        "address", "Listening address",
        f'label_values(sockdiag_listener_accept_queue_limit{{{SEL}}}, address)', multi=True, include_all=True)]
    d = Dashboard("sockdiag-listeners", "Listeners",
                  "Accept queues of listening sockets from sockdiag_exporter: one row per listening address "
                  "(the address variable), with the kernel's host-wide listen overflow and drop counters.",
                  variables)
    overflows = [target(f"sum by (instance) (rate(sockdiag_tcp_listen_overflows_total{{{SEL}}}[$__rate_interval]))",
                        "{{instance}} overflows"),
                 target(f"sum by (instance) (rate(sockdiag_tcp_listen_drops_total{{{SEL}}}[$__rate_interval]))",
                        "{{instance}} drops")]

    d.row("All listeners")
    d.add(fullest_listeners("The 10 listening addresses with the fullest accept queues. Bad: above 80% (alert "
                            "SockdiagListenerAcceptQueueNearLimit after 10m); 100% means new connections are being "
                            "dropped."), 8, 8)
    d.add(timeseries("TCP listen overflows and drops (host-wide)", "Connections per second dropped because an "
                     "accept queue was full (ListenOverflows) and all listener drops (ListenDrops). The kernel "
                     "counts them per host (network namespace), not per listener. Bad: anything above zero "
                     "(alert SockdiagTCPListenOverflows).", overflows, "cps"), 8, 8)
    d.add(timeseries("Accept queues by protocol", "Connections waiting for accept() over all listeners and the "
                     "summed limits, per family and protocol. Bad: waiting approaching the dashed limit.",
                     [target(f"sum by (family, protocol) (sockdiag_accept_queue_length{{{SEL}}})",
                             "{{family}} {{protocol}} waiting"),
                      target(f"sum by (family, protocol) (sockdiag_accept_queue_limit{{{SEL}}})",
                             "{{family}} {{protocol}} limit")], "short", overrides=[dashed(".* limit")]), 8, 8)

    one = f'{SEL}, address=~"$address"'
    d.row("Listener $address", repeat="address")
    d.add(timeseries("Accept queue: waiting vs limit", "Connections waiting for accept() on this address and "
                     "its accept-queue limit (listen() backlog capped by net.core.somaxconn), per instance and "
                     "protocol. Bad: the waiting line reaching the dashed limit: new connections are dropped.",
                     [target(f"sum by (instance, family, protocol) (sockdiag_listener_accept_queue_length{{{one}}})",
                             "{{instance}} {{family}} {{protocol}} waiting"),
                      target(f"sum by (instance, family, protocol) (sockdiag_listener_accept_queue_limit{{{one}}})",
                             "{{instance}} {{family}} {{protocol}} limit")],
                     "short", overrides=[dashed(".* limit")]), 9, 8)
    d.add(timeseries("Accept queue fill", "Waiting connections as a share of the limit. Bad: above the 80% "
                     "line for minutes (alert SockdiagListenerAcceptQueueNearLimit); 100% drops connections.",
                     [target(f"instance_address:sockdiag_listener_accept_queue:fill_ratio{{{one}}}",
                             "{{instance}} {{family}} {{protocol}}")], "percentunit",
                     steps=((None, "green"), (0.8, "red")), threshold_line=True), 6, 8)
    d.add(timeseries("Listen overflows and drops (host-wide)", "The host's TCP ListenOverflows and ListenDrops "
                     "per second, shown next to this listener to correlate: the kernel does not count them per "
                     "listener. Bad: above zero while this listener is full.", overflows, "cps"), 6, 8)
    d.add(stat("Listening sockets", "Sockets behind this address: more than 1 with SO_REUSEPORT (their queues "
               "and limits are summed). Bad: fewer than the application should have (a worker died).",
               f"sum(sockdiag_listener_sockets{{{one}}})", "short"), 3, 8)
    return d


DASHBOARDS = {"sockdiag-overview.json": overview, "sockdiag-listeners.json": listeners}


def render_all():
    return {name: json.dumps(build().render(), indent=2, ensure_ascii=False) + "\n"
            for name, build in DASHBOARDS.items()}


def main(argv=None):
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
