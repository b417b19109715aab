"""Re-planning from fake GPU readings: the pure decision, then a Replanner over a real pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from whisper_subs.capacity import CapacityOptions, CapacityPlan, plan_capacity
from whisper_subs.devices import GpuInfo, parse_fake_gpus
from whisper_subs.engine import DecodeOptions, EngineSpec, FakeBehaviour
from whisper_subs.pool import ChunkTask, DeviceSlots, DeviceStatus, PoolStatus, WorkerPool
from whisper_subs.replan import Replanner, SlotChange, replan_slots
from whisper_subs.types import SAMPLE_RATE

pytestmark = pytest.mark.timeout(60)

MODEL = "large-v3"  # float16, batch 1: 4521 MiB a worker (faster-whisper#1030)
NEED = 4521
TOTAL = 24 * 1024  # a 24 GB card: 4 workers fit in 80 % of it


def plan_for(spec: str = "24/24,24/24", **options: Any) -> CapacityPlan:
    return plan_capacity(
        parse_fake_gpus(spec), MODEL, "float16", 1, CapacityOptions(**options), cpu_cores=2
    )


def reading(*free_mb: int) -> list[GpuInfo]:
    """GPUs cuda:0, cuda:1, ... of 24 GB with the given free MiB."""
    gpus = parse_fake_gpus(",".join("24/24" for _ in free_mb))
    return [replace(gpu, memory_free_mb=mb) for gpu, mb in zip(gpus, free_mb, strict=True)]


def status(*devices: tuple[str, int, int] | tuple[str, int, int, int]) -> PoolStatus:
    """Pool status from (device id, slots, workers[, oom events]) rows."""
    rows = tuple(
        DeviceStatus(d[0], d[1], d[2], 0, 1, 0, 0, d[3] if len(d) > 3 else 0) for d in devices
    )
    return PoolStatus(rows, sum(r.slots for r in rows), 0, 0, 0, 0, 0)


def test_the_plan_these_tests_start_from() -> None:
    plan = plan_for()
    assert [(d.id, d.need_mb, d.slots) for d in plan.devices] == [
        ("cuda:0", NEED, 4),
        ("cuda:1", NEED, 4),
    ]


# -- the pure decision -------------------------------------------------------------------------


def test_more_free_memory_gives_slots_back() -> None:
    # The pool runs 1 worker (it started when memory was short); now the rest of the card is free.
    changes = replan_slots(
        plan_for(), reading(TOTAL - NEED, TOTAL - NEED), status(("cuda:0", 1, 1)), CapacityOptions()
    )
    assert [(c.device_id, c.old_slots, c.new_slots) for c in changes] == [("cuda:0", 1, 4)]
    assert "4521 MiB held by running workers" in changes[0].reason


def test_the_pools_own_workers_count_as_held_not_as_used() -> None:
    # 4 workers hold 4 x 4521 MiB: the reading shows little free, yet nothing should shrink.
    free = TOTAL - 4 * NEED
    assert free * 0.8 < 2 * NEED  # taken at face value, the reading would leave 1 worker
    changes = replan_slots(
        plan_for(), reading(free, TOTAL), status(("cuda:0", 4, 4)), CapacityOptions()
    )
    assert changes == []


def test_less_free_memory_takes_slots_away() -> None:
    # Another process took 5000 MiB beside our 4 workers: 3 fit in what is left to us.
    free = TOTAL - 4 * NEED - 5000
    changes = replan_slots(
        plan_for(), reading(free, TOTAL), status(("cuda:0", 4, 4)), CapacityOptions()
    )
    assert [(c.old_slots, c.new_slots, c.memory_free_mb) for c in changes] == [(4, 3, free)]


def test_a_full_device_gets_zero_slots_and_the_reason() -> None:
    changes = replan_slots(
        plan_for(), reading(0, TOTAL), status(("cuda:0", 1, 1)), CapacityOptions()
    )
    (change,) = changes
    assert change.new_slots == 0
    assert "one worker needs 4521 MiB" in change.reason


def test_slots_stay_within_the_plans_bounds() -> None:
    big = plan_for("80/80")
    changes = replan_slots(big, reading(TOTAL * 10), status(("cuda:0", 2, 2)), CapacityOptions())
    assert [c.new_slots for c in changes] == [8]  # max_slots, however much is free
    capped = plan_for("80/80", max_slots=3)
    options = CapacityOptions(max_slots=3)
    changes = replan_slots(capped, reading(TOTAL * 10), status(("cuda:0", 2, 2)), options)
    assert [c.new_slots for c in changes] == [3]


def test_a_ceiling_caps_growth() -> None:
    changes = replan_slots(
        plan_for(), reading(TOTAL, TOTAL), status(("cuda:0", 1, 1)), CapacityOptions(),
        ceilings={"cuda:0": 2},
    )  # fmt: skip
    assert [(c.new_slots, "held at 2" in c.reason) for c in changes] == [(2, True)]


def test_devices_missing_from_the_reading_or_the_pool_are_left_alone() -> None:
    plan = plan_for("24/24,24/24")
    pool = status(("cuda:0", 1, 1), ("cpu", 2, 2))  # cuda:1 is not in the pool
    assert replan_slots(plan, [], pool, CapacityOptions()) == []
    assert replan_slots(plan, reading(TOTAL, 0)[1:], pool, CapacityOptions()) == []


# -- the Replanner over a real pool (fake engine) --------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Readings:
    """A fixed GPU reading, which the test changes."""

    def __init__(self, *free_mb: int) -> None:
        self.free_mb = list(free_mb)
        self.calls = 0

    def __call__(self) -> Sequence[GpuInfo]:
        self.calls += 1
        return reading(*self.free_mb)


class Card:
    """A fake 24 GB cuda:0 whose free memory follows the pool: each worker holds NEED MiB."""

    def __init__(self, pool: WorkerPool, other_mb: int = 0) -> None:
        self.pool = pool
        self.other_mb = other_mb  # held by some other process

    def __call__(self) -> Sequence[GpuInfo]:
        return reading(max(0, TOTAL - self.other_mb - cuda0(self.pool).workers * NEED))


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def gpu_slots(n: int, **behaviour: Any) -> DeviceSlots:
    return DeviceSlots("cuda:0", n, EngineSpec("fake", "cuda", fake=FakeBehaviour(**behaviour)))


@pytest.fixture
def pools() -> Iterator[list[WorkerPool]]:
    made: list[WorkerPool] = []
    yield made
    for pool in made:
        pool.close()


def cuda0(pool: WorkerPool) -> DeviceStatus:
    return next(d for d in pool.status().devices if d.device_id == "cuda:0")


def test_replanner_grows_after_two_readings_and_shrinks_at_once(
    pools: list[WorkerPool],
) -> None:
    pool = WorkerPool([gpu_slots(1)])
    pools.append(pool)
    card = Card(pool)
    seen: list[SlotChange] = []
    replanner = Replanner(pool, plan_for("24/24"), card, clock=FakeClock(), on_change=seen.append)

    assert replanner.check() == []  # one reading allows 4: not yet
    assert cuda0(pool).slots == 1
    (grown,) = replanner.check()
    assert (grown.old_slots, grown.new_slots) == (1, 4)
    assert cuda0(pool).slots == 4
    assert eventually(lambda: pool.status().model_loads == 4)
    assert replanner.check() == []  # its own workers' memory does not count against it

    card.other_mb = 5000  # someone else takes 5000 MiB: 3 workers fit beside them
    (shrunk,) = replanner.check()
    assert (shrunk.old_slots, shrunk.new_slots) == (4, 3)
    assert eventually(lambda: cuda0(pool).workers == 3)
    assert replanner.check() == []  # settled: the stopped worker's memory is free again
    assert seen == [grown, shrunk]

    card.other_mb = 0  # they are gone: back to 4, after two readings
    assert replanner.check() == []
    assert [c.new_slots for c in replanner.check()] == [4]


def test_replanner_waits_for_readings_in_a_row(pools: list[WorkerPool]) -> None:
    pool = WorkerPool([gpu_slots(1)])
    pools.append(pool)
    readings = Readings(TOTAL - NEED)
    replanner = Replanner(pool, plan_for("24/24"), readings, grow_after=2, clock=FakeClock())
    assert replanner.check() == []
    readings.free_mb = [NEED]  # a dip: 1 + 1 workers' worth, still 1 slot: the run breaks
    assert replanner.check() == []
    readings.free_mb = [TOTAL - NEED]
    assert replanner.check() == []  # the count starts again
    assert [c.new_slots for c in replanner.check()] == [4]


def test_replanner_holds_a_device_after_it_ran_out_of_memory(
    pools: list[WorkerPool], tmp_path: Path
) -> None:
    (tmp_path / "g-0.oom").touch()
    pool = WorkerPool([gpu_slots(2, oom_marker_dir=str(tmp_path))])
    pools.append(pool)
    clock = FakeClock()
    replanner = Replanner(
        pool, plan_for("24/24"), Card(pool), grow_after=1, oom_hold_s=300, clock=clock
    )
    task = ChunkTask("g", 0, np.zeros(SAMPLE_RATE, dtype=np.float32), DecodeOptions())
    pool.submit(task).result(timeout=30)  # out of memory once, then done on the other worker
    assert cuda0(pool).slots == 1 and cuda0(pool).oom_events == 1
    assert eventually(lambda: cuda0(pool).workers == 1)  # the one that ran out has stopped

    # The reading says 4 would fit, but the device just ran out at 2: hold it at 1 ...
    assert replanner.check() == []
    clock.now += 299
    assert replanner.check() == []
    clock.now += 2  # ... until the hold is over
    assert [c.new_slots for c in replanner.check()] == [4]


def test_replanner_thread_applies_readings_until_stopped(pools: list[WorkerPool]) -> None:
    pool = WorkerPool([gpu_slots(1)])
    pools.append(pool)
    readings = Readings(TOTAL - NEED)
    with Replanner(pool, plan_for("24/24"), readings, interval_s=0.05, grow_after=1):
        assert eventually(lambda: cuda0(pool).slots == 4)
    calls = readings.calls
    time.sleep(0.2)
    assert readings.calls == calls  # stopped
    assert not any(t.name == "whisper-subs-replan" for t in threading.enumerate())


def test_replanner_checks_its_arguments(pools: list[WorkerPool]) -> None:
    pool = WorkerPool([gpu_slots(1)])
    pools.append(pool)
    with pytest.raises(ValueError, match="interval_s"):
        Replanner(pool, plan_for(), Readings(), interval_s=0)
    with pytest.raises(ValueError, match="grow_after"):
        Replanner(pool, plan_for(), Readings(), grow_after=0)
