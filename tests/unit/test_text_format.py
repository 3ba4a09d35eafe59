"""The text format as /metrics serves it: a gauge histogram's _gcount and _gsum carry HELP of their own."""

import re
import subprocess

from prometheus_client.core import GaugeHistogramMetricFamily

from sockdiag_exporter import metrics as m
from sockdiag_exporter.webapp import OPENMETRICS, TEXT


class Registry:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return iter(self.families)


def histograms():
    families = []
    for metric in m.ALL:
        if metric.kind == "gaugehistogram":
            family = GaugeHistogramMetricFamily(metric.name, metric.help, labels=metric.labels)
            family.add_metric(["inet", "stream", "tcp"], [("0", 3), ("1024", 4), ("+Inf", 5)], 2048)
            families.append(family)
    return families


def test_every_gauge_histogram_has_its_parts_help():
    assert {metric.name for metric in m.ALL if metric.kind == "gaugehistogram"} == set(m.GAUGE_HISTOGRAM_PARTS)


def test_gcount_and_gsum_have_their_own_help_and_values():
    text = TEXT.encode(Registry(histograms())).decode()
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.M))
    for metric in (m.RECEIVE_QUEUE_HISTOGRAM, m.SEND_QUEUE_HISTOGRAM):
        assert helps[metric.name] == metric.help
        assert helps[metric.name + "_gcount"].startswith("Data sockets") and "counted in" in helps[metric.name + "_gcount"]
        assert helps[metric.name + "_gsum"].startswith("Sum of the") and "in bytes" in helps[metric.name + "_gsum"]
        labels = '{family="inet",protocol="tcp",socket_type="stream"}'
        assert f"{metric.name}_gcount{labels} 5.0\n" in text and f"{metric.name}_gsum{labels} 2048.0\n" in text
        assert f'{metric.name}_bucket{{family="inet",le="+Inf",protocol="tcp",socket_type="stream"}} 5.0' in text
    # OpenMetrics has gauge histograms: one family, untouched
    om = OPENMETRICS.encode(Registry(histograms())).decode()
    assert "# TYPE sockdiag_socket_receive_queue_bytes gaugehistogram" in om and "_gsum HELP" not in om


def test_promtool_accepts_it():
    check = subprocess.run(["promtool", "check", "metrics"], input=TEXT.encode(Registry(histograms())),
                           capture_output=True)
    assert check.returncode == 0 and not (check.stdout + check.stderr).strip(), check.stdout + check.stderr
