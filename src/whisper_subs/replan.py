"""Re-planning: fresh free-memory readings give a GPU's worker slots back (or take them away).

The pool shrinks a device on its own when it runs out of memory (``capacity.shrink_after_oom``);
nothing there ever grows it again. A ``Replanner`` re-reads the GPUs every ``interval_s``,
re-plans each one with ``capacity.replan_device`` (counting the memory the pool's own workers
hold as available to the pool: workers x need) and calls ``pool.set_slots`` where the count
changed, within the plan's bounds.

Two guards keep it from thrashing, since every new slot is a model load:

- growth waits for ``grow_after`` readings in a row that allow it; shrinking is at once;
- after an out-of-memory event on a device, its slots are held at most at the count the pool
  shrank to for ``oom_hold_s``: running out is stronger evidence than the estimate the plan
  divides by, and growing straight back would run out again.

``replan_slots`` is the decision as a pure function of the plan, a reading and the pool's
status; ``Replanner`` adds the clock, the state between readings and the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .capacity import CapacityOptions, CapacityPlan, replan_device
from .devices import GpuInfo
from .errors import WhisperSubsError
from .pool import PoolStatus

log = logging.getLogger(__name__)


class SlotTarget(Protocol):
    """What the Replanner needs of a pool (``WorkerPool`` has both)."""

    def status(self) -> PoolStatus: ...

    def set_slots(self, device_id: str, slots: int) -> None: ...


@dataclass(frozen=True, slots=True)
class SlotChange:
    """One device's slots re-planned from a reading."""

    device_id: str
    old_slots: int
    new_slots: int
    memory_free_mb: int
    reason: str


def replan_slots(
    plan: CapacityPlan,
    gpus: Sequence[GpuInfo],
    status: PoolStatus,
    options: CapacityOptions,
    ceilings: Mapping[str, int] | None = None,
) -> list[SlotChange]:
    """The slot counts a fresh reading allows, for every GPU that differs from the pool's now.

    Only GPUs in the plan, the reading and the pool are considered; the CPU is left alone.
    ``ceilings`` caps a device's count (after an out-of-memory event).
    """
    readings = {gpu.id: gpu for gpu in gpus}
    running = {d.device_id: d for d in status.devices}
    changes = []
    for entry in plan.devices:
        gpu, device = readings.get(entry.id), running.get(entry.id)
        if entry.kind != "cuda" or gpu is None or device is None:
            continue
        fresh = replan_device(
            entry, gpu.memory_free_mb, options, held_mb=device.workers * entry.need_mb
        )
        slots, reason = fresh.slots, fresh.reason
        cap = (ceilings or {}).get(entry.id)
        if cap is not None and slots > cap:
            slots, reason = cap, f"held at {cap} after running out of memory ({reason})"
        if slots != device.slots:
            changes.append(SlotChange(entry.id, device.slots, slots, gpu.memory_free_mb, reason))
    return changes


class Replanner:
    """Re-reads the GPUs every ``interval_s`` and re-sizes the pool's devices to match."""

    def __init__(
        self,
        pool: SlotTarget,
        plan: CapacityPlan,
        read_gpus: Callable[[], Sequence[GpuInfo]],
        options: CapacityOptions | None = None,
        *,
        interval_s: float = 30.0,
        grow_after: int = 2,
        oom_hold_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[SlotChange], None] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be above 0, got {interval_s}")
        if grow_after < 1:
            raise ValueError(f"grow_after must be at least 1, got {grow_after}")
        self.pool = pool
        self.plan = plan
        self.options = options or CapacityOptions(margin=plan.margin)
        self._read = read_gpus
        self.interval_s = interval_s
        self.grow_after = grow_after
        self.oom_hold_s = oom_hold_s
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._growth_seen: dict[str, int] = {}  # device -> readings in a row that allow growth
        self._ooms: dict[str, int] = {d.device_id: d.oom_events for d in pool.status().devices}
        self._holds: dict[str, tuple[int, float]] = {}  # device -> (ceiling, until)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> list[SlotChange]:
        """Take one reading and apply what it allows; return the changes made."""
        with self._lock:
            gpus = self._read()
            status = self.pool.status()
            now = self._clock()
            self._note_ooms(status, now)
            ceilings = {d: cap for d, (cap, until) in self._holds.items() if now < until}
            changes = replan_slots(self.plan, gpus, status, self.options, ceilings)
            growing = {c.device_id for c in changes if c.new_slots > c.old_slots}
            for device_id in set(self._growth_seen) - growing:
                del self._growth_seen[device_id]  # the run of readings that allow growth broke
            applied = []
            for change in changes:
                if change.device_id in growing:
                    seen = self._growth_seen.get(change.device_id, 0) + 1
                    self._growth_seen[change.device_id] = seen
                    if seen < self.grow_after:
                        log.debug(
                            "%s: %d reading(s) in a row allow %d workers; growing after %d",
                            change.device_id, seen, change.new_slots, self.grow_after,
                        )  # fmt: skip
                        continue
                    del self._growth_seen[change.device_id]
                self.pool.set_slots(change.device_id, change.new_slots)
                log.info("%s: %d -> %d workers: %s", change.device_id, change.old_slots,
                         change.new_slots, change.reason)  # fmt: skip
                applied.append(change)
        for change in applied:
            if self._on_change is not None:
                self._on_change(change)
        return applied

    def _note_ooms(self, status: PoolStatus, now: float) -> None:
        for device in status.devices:
            if device.oom_events > self._ooms.get(device.device_id, 0):
                self._holds[device.device_id] = (device.slots, now + self.oom_hold_s)
                log.info("%s ran out of memory: at most %d worker(s) for %.0f s",
                         device.device_id, device.slots, self.oom_hold_s)  # fmt: skip
            self._ooms[device.device_id] = device.oom_events

    # -- the thread ----------------------------------------------------------------------------

    def start(self) -> Replanner:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="whisper-subs-replan", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except WhisperSubsError as exc:  # a bad reading (e.g. a malformed fake GPU list)
                log.warning("re-planning skipped: %s", exc)

    def __enter__(self) -> Replanner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
