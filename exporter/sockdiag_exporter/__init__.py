"""sockdiag_exporter: Prometheus metrics for every socket on a Linux host, read through sock_diag."""

__version__ = "0.1.0"
