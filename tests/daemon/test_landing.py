"""The landing page of the running daemon: made from the last collection (a storm of page requests after a scrape
makes no collection and one page), with the host's sockets on it."""

import threading

from helpers import populate

CLIENTS, REQUESTS = 20, 25


def dumps(d) -> int:
    return int(d.metrics().value("sockdiag_netlink_dumps_total"))


def test_a_page_storm_reads_the_last_scrape_and_makes_one_page(daemon, netns, tmp_path):
    names = populate(netns, tmp_path)
    d = daemon()
    per_collection = -dumps(d) + dumps(d)  # two scrapes in a row: what one collection costs
    assert per_collection > 0
    before = dumps(d)  # the collection the pages should show
    bodies, statuses = set(), []

    def client():
        for _ in range(REQUESTS):
            status, headers, body = d.get("/")
            statuses.append(status)
            bodies.add(body)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * CLIENTS * REQUESTS
    assert dumps(d) - before == per_collection  # the next scrape's own: the pages collected nothing
    assert len(bodies) == 1  # one page, made once (it names its collection's time)
    page = bodies.pop().decode()
    assert "7/8" in page and names["full"] in page and '<a href="/metrics">' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script" not in page
    assert '<meta http-equiv="refresh" content="10">' in page
