"""Series economy: what an idle host costs a fleet, counted from a real scrape of the daemon (its own process
metrics included) in a namespace holding nothing but the exporter's own sockets. A regression guard: README's
"Series per host" table quotes these budgets."""

IDLE_BUDGET = 250  # series of the default profile on an idle host (README, "Series per host")
FULL_IDLE_AT_LEAST = 1000  # the full profile restores every zero: far more


def series(body: bytes) -> int:
    return sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))


def test_an_idle_host_stays_under_the_budget_by_default(daemon):
    d = daemon()
    d.get("/metrics")  # the first scrape; the second sees its own connection's sockets too, as Prometheus would
    status, _, body = d.get("/metrics")
    assert status == 200
    count = series(body)
    assert count <= IDLE_BUDGET, f"{count} series on an idle host, more than the {IDLE_BUDGET} budgeted"


def test_the_full_profile_restores_every_zero(daemon, tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("profile: full\n")
    d = daemon(f"--config.file={config}")
    status, _, body = d.get("/metrics")
    assert status == 200 and series(body) >= FULL_IDLE_AT_LEAST
    assert b'state="new_syn_recv"' in body and b'sockdiag_backlog_bytes{' in body
