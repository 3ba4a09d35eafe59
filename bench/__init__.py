"""Benchmark harness: scrape cost of sockdiag_exporter beside ss, node_exporter and the kernel floor."""
