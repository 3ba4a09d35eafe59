"""The collection plan: swapped whole, and a retired plan's sockets closed exactly when its last collection ends."""

from sockdiag_exporter.plan import PlanHolder


class FakePlan:
    def __init__(self, name):
        self.name = name
        self.closed = 0

    def close(self):
        self.closed += 1


def test_a_swapped_plan_closes_when_its_last_collection_gives_it_back():
    old, new = FakePlan("old"), FakePlan("new")
    holder = PlanHolder(old)
    first, second = holder.take(), holder.take()
    assert first is second is old
    holder.swap(new)
    assert holder.current is new and holder.take() is new  # collections from now on get the new plan
    holder.give_back(new)
    holder.give_back(first)
    assert old.closed == 0  # one collection still uses it
    holder.give_back(second)
    assert old.closed == 1 and new.closed == 0


def test_an_idle_plan_closes_at_once_and_the_current_one_only_at_shutdown():
    old, new = FakePlan("old"), FakePlan("new")
    holder = PlanHolder(old)
    holder.give_back(holder.take())
    holder.swap(new)
    assert old.closed == 1
    holder.give_back(holder.take())
    assert new.closed == 0
    holder.close()
    assert new.closed == 1


def test_collectors_asking_for_the_same_records_in_one_collection_share_one_dump():
    """tcp's listener dump and flows' are the very same request: in one collection (begun by the scraper) the
    second asker gets the first one's records; the next collection dumps again; outside a collection nothing is
    shared; a failed dump is not shared."""
    from sockdiag_exporter.collectors.base import Context
    from sockdiag_exporter.diag import requests

    asked = []

    class Diag:
        fail = False

        def records(self, request, layout, what, extract):
            asked.append(what)
            if Diag.fail:
                raise OSError("gone")
            return [len(asked)]

        def close(self):
            pass

    ctx = Context(Diag)
    request = requests.inet(2, 6, requests.LISTEN_STATES, True)

    def ask(what):
        return ctx.records(request, requests.INET_LAYOUT, what, requests.inet_listener)

    assert ask("a") == [1] and ask("b") == [2]  # no collection begun: each asks
    ctx.begin()
    assert ask("tcp") == [3] and ask("flows") == [3] and asked[-1] == "tcp"
    ctx.begin()
    assert ask("flows") == [4] and ask("tcp") == [4] and len(asked) == 4
    ctx.begin()
    Diag.fail = True
    for what in ("tcp", "flows"):
        try:
            ask(what)
        except OSError:
            pass
    assert asked[-2:] == ["tcp", "flows"]  # the failure was not handed on: flows asked itself
