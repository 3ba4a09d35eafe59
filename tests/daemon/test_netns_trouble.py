"""Trouble with other network namespaces costs only those: the exporter's own is always collected and served, the
failure is a metric with a bounded reason, and the log says what happened once, in words that name the cause."""

import pytest

from helpers import Exposition

# The exporter runs in a mount namespace of its own where /run/netns is made unusable, as root without the
# capabilities that bypass file permissions (as in a container that did not get them).
PRIVATE = ["unshare", "--mount", "--propagation", "private", "sh", "-ec"]
NO_DAC = 'exec setpriv --bounding-set=-dac_override,-dac_read_search "$@"'
CASES = {
    "unreadable": ("mount -t tmpfs -o mode=000 none /run/netns", "named", "permission_denied",
                   "cannot list network namespaces in /run/netns: Permission denied"),
    "a file": ("mount -t tmpfs none /run && touch /run/netns", "named", "not_a_directory",
               "cannot list network namespaces in /run/netns: Not a directory"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_run_netns_costs_only_the_other_namespaces(daemon, tmp_path, case):
    setup, source, reason, message = CASES[case]
    config = tmp_path / "config.yml"
    config.write_text("namespaces: {named: true}\n")
    d = daemon(f"--config.file={config}", wrap=[*PRIVATE, f"{setup}; {NO_DAC}", "sh"])
    for _ in range(3):
        status, _, body = d.get("/metrics")
        assert status == 200
    exposition = Exposition(body.decode())
    assert exposition.value("sockdiag_netns_discovery_success", source=source, reason=reason) == 0
    assert exposition.select("sockdiag_sockets", protocol="tcp", state="listen")  # the own namespace: itself
    assert exposition.value("sockdiag_scrape_collector_success", collector="tcp") == 1
    _, log = d.stop()
    warnings = [line for line in log.splitlines() if "cannot list" in line]
    assert len(warnings) == 1 and message in warnings[0], log  # once, not once per scrape


def test_a_stale_entry_is_named_for_what_it_is(daemon, tmp_path):
    """A plain file in /run/netns (left behind by a crashed tool): opening works, setns refuses it."""
    config = tmp_path / "config.yml"
    config.write_text("namespaces: {named: true}\n")
    setup = "mount -t tmpfs none /run/netns && touch /run/netns/stale"
    d = daemon(f"--config.file={config}", wrap=[*PRIVATE, f"{setup}; exec \"$@\"", "sh"])
    exposition = d.metrics()
    assert exposition.value("sockdiag_netns_enter_failures", reason="not_a_network_namespace") == 1
    assert exposition.value("sockdiag_netns_discovery_success", source="named", reason="") == 1
    assert exposition.value("sockdiag_scrape_collector_success", collector="tcp") == 1
    d.metrics()
    _, log = d.stop()
    lines = [line for line in log.splitlines() if "stale" in line]
    assert len(lines) == 1 and "cannot enter network namespace stale (/run/netns/stale): not a network namespace" \
        in lines[0], log
