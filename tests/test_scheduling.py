"""scheduling.Scheduler: which chunks a free worker takes next (pure, no processes)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whisper_subs.scheduling import Pending, Scheduler

pytestmark = pytest.mark.timeout(60)


def pending(
    task_id: int,
    duration_s: float,
    group: str = "a",
    priority: int = 0,
    options_key: str = "o",
) -> Pending:
    return Pending(task_id, group, priority, duration_s, options_key)


def scheduler_with(*items: Pending) -> Scheduler:
    scheduler = Scheduler()
    for item in items:
        scheduler.add(item)
    return scheduler


def test_longest_first_within_a_group() -> None:
    s = scheduler_with(pending(0, 5.0), pending(1, 30.0), pending(2, 12.0), pending(3, 30.0))
    order = [s.next_batch(worker_id=0, n=1, live_workers=[0])[0] for _ in range(4)]
    assert order == [1, 3, 2, 0]  # equal lengths: the earlier chunk first
    assert len(s) == 0
    assert s.next_batch(0, 1, [0]) == []


def test_batch_takes_the_longest_chunks() -> None:
    s = scheduler_with(*(pending(i, float(d)) for i, d in enumerate([3, 9, 1, 7, 5])))
    assert s.next_batch(0, 3, [0]) == [1, 3, 4]
    assert s.next_batch(0, 3, [0]) == [0, 2]


def test_higher_priority_first_even_when_shorter() -> None:
    s = scheduler_with(pending(0, 30.0, "bulk"), pending(1, 2.0, "urgent", priority=5))
    assert s.next_batch(0, 1, [0]) == [1]
    assert s.next_batch(0, 1, [0]) == [0]


def test_least_served_group_goes_first() -> None:
    """A short job behind a long one is not starved: groups alternate by audio served."""
    s = scheduler_with(
        *(pending(i, 30.0, "long") for i in range(4)),
        pending(10, 10.0, "short"),
        pending(11, 10.0, "short"),
    )
    groups = []
    for _ in range(6):
        (task_id,) = s.next_batch(0, 1, [0])
        groups.append("short" if task_id >= 10 else "long")
    # "long" < "short" by name breaks the first tie; after that the least served goes next.
    assert groups == ["long", "short", "short", "long", "long", "long"]


def test_batch_only_holds_chunks_with_the_same_options() -> None:
    s = scheduler_with(
        pending(0, 30.0, options_key="en"),
        pending(1, 20.0, options_key="de"),
        pending(2, 10.0, options_key="en"),
    )
    assert s.next_batch(0, 4, [0]) == [0, 2]
    assert s.next_batch(0, 4, [0]) == [1]


def test_batch_is_filled_from_other_groups_with_the_same_options() -> None:
    s = scheduler_with(pending(0, 30.0, "a"), pending(1, 20.0, "b"), pending(2, 25.0, "b"))
    assert s.next_batch(0, 3, [0]) == [0, 2, 1]


def test_a_failed_chunk_avoids_the_worker_it_failed_on() -> None:
    item = pending(0, 10.0)
    item.avoid.add(7)
    s = scheduler_with(item, pending(1, 5.0))
    assert s.next_batch(7, 1, live_workers=[7, 8]) == [1]  # skips chunk 0
    assert s.next_batch(7, 1, live_workers=[7, 8]) == []
    assert s.next_batch(8, 1, live_workers=[7, 8]) == [0]


def test_a_failed_chunk_runs_anywhere_when_every_live_worker_failed_it() -> None:
    item = pending(0, 10.0)
    item.avoid.update({7, 8})
    s = scheduler_with(item)
    assert s.next_batch(7, 1, live_workers=[7, 8]) == [0]


def test_remove_group_drop_and_drain() -> None:
    s = scheduler_with(pending(0, 1.0, "a"), pending(1, 2.0, "b"), pending(2, 3.0, "a"))
    assert s.queued_by_group() == {"a": 2, "b": 1}
    assert sorted(s.remove_group("a")) == [0, 2]
    assert s.remove_group("a") == []
    assert s.queued_by_group() == {"b": 1}
    assert s.drain() == [1]
    assert len(s) == 0


def test_nothing_for_a_batch_of_zero() -> None:
    s = scheduler_with(pending(0, 1.0))
    assert s.next_batch(0, 0, [0]) == []
    assert len(s) == 1


@settings(max_examples=200, deadline=None)
@given(
    durations=st.lists(st.floats(0.1, 30.0), min_size=1, max_size=40),
    batch=st.integers(1, 8),
    groups=st.integers(1, 3),
)
def test_every_chunk_is_handed_out_once(durations: list[float], batch: int, groups: int) -> None:
    s = scheduler_with(*(pending(i, d, group=f"g{i % groups}") for i, d in enumerate(durations)))
    handed: list[int] = []
    while len(s):
        taken = s.next_batch(0, batch, [0])
        assert 1 <= len(taken) <= batch
        handed.extend(taken)
    assert sorted(handed) == list(range(len(durations)))


@settings(max_examples=200, deadline=None)
@given(durations=st.lists(st.floats(0.1, 30.0), min_size=1, max_size=40))
def test_one_group_comes_out_longest_first(durations: list[float]) -> None:
    s = scheduler_with(*(pending(i, d) for i, d in enumerate(durations)))
    out = [durations[s.next_batch(0, 1, [0])[0]] for _ in durations]
    assert out == sorted(durations, reverse=True)
