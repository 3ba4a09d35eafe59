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
