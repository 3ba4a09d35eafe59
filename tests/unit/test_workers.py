"""WorkerPool: a collection's tasks and the parts a running task shares (collectors' parallel dumps)."""

import threading

import pytest

from sockdiag_exporter.workers import WorkerPool


@pytest.fixture
def pool():
    made = WorkerPool(2, namespaces=False)
    yield made
    made.close()


def test_shared_parts_come_back_in_order_with_their_failures(pool):
    def part(i):
        if i == 2:
            raise ValueError("part 2")
        return i * 10

    results = pool.run([(None, lambda: pool.share([lambda i=i: part(i) for i in range(4)]))])
    (ok, shared), = results
    assert ok and [r[0] for r in shared] == [True, True, False, True]
    assert [r[1] for r in shared if r[0]] == [0, 10, 30] and str(shared[2][1]) == "part 2"


def test_every_task_sharing_at_once_never_deadlocks(pool):
    """Both workers share parts that share again, three levels deep: every part runs, taken back or helped."""
    def tree(depth):
        if depth == 0:
            return 1
        return sum(value for _, value in pool.share([lambda: tree(depth - 1)] * 3))

    done = []
    worker = threading.Thread(target=lambda: done.append(pool.run([(None, lambda: tree(3))] * 4)))
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "a share deadlocked"
    assert done[0] == [(True, 27)] * 4


def test_a_sharer_waiting_for_a_part_runs_the_queued_tasks_meanwhile(pool):
    """While the other worker holds a shared part, a task queued meanwhile is run by the waiting sharer: without
    that, both workers would wait (the part ends only once that task ran) until the part gives up."""
    started, release = threading.Event(), threading.Event()
    ran_in = {}

    def slow_part():
        started.set()
        assert release.wait(10), "nobody ran the queued task"
        return "part"

    def sharer():
        ran_in["sharer"] = threading.current_thread().name
        return pool.share([lambda: started.wait(10) and "first", slow_part])

    def queued():
        ran_in["queued"] = threading.current_thread().name
        release.set()
        return "queued"

    later = []
    submitter = threading.Thread(target=lambda: started.wait(10) and later.append(pool.run([(None, queued)])))
    submitter.start()
    assert pool.run([(None, sharer)]) == [(True, [(True, "first"), (True, "part")])]
    submitter.join(10)
    assert later == [[(True, "queued")]] and ran_in["queued"] == ran_in["sharer"]
