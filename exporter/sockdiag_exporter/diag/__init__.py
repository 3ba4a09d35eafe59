"""The diag layer: netlink I/O, dump requests and streaming decoders. Knows nothing about Prometheus."""
