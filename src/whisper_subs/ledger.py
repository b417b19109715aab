"""The chunks a pool owes results for, shared by the local and the Ray back ends.

A chunk is either queued (in the Scheduler) or out on a worker. The ledger keeps its Future and
its attempts, decides retry-or-fail, and collects outcomes to be settled after the pool's lock
is released (Future callbacks may call back into the pool). No locking here: the pool's lock
guards every call.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ChunkFailedError, WhisperSubsError
from .scheduling import Pending, Scheduler
from .types import ChunkResult

if TYPE_CHECKING:  # pool imports this module
    from .pool import ChunkTask

log = logging.getLogger(__name__)

# A Future's outcome: a result, an exception, or None for "cancelled".
Outcome = ChunkResult | BaseException | None


@dataclass(slots=True)
class Entry:
    task: ChunkTask
    future: Future[ChunkResult]
    attempts: int = 0
    last_error: str = ""


class ChunkLedger:
    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = max_attempts
        self.scheduler = Scheduler()
        self.entries: dict[int, Entry] = {}
        self.retries = 0
        self._ids = itertools.count()
        self._settle: list[tuple[Future[ChunkResult], Outcome]] = []

    @property
    def queued(self) -> int:
        return len(self.scheduler)

    def add(self, task: ChunkTask) -> Future[ChunkResult]:
        future: Future[ChunkResult] = Future()
        task_id = next(self._ids)
        self.entries[task_id] = Entry(task, future)
        self.scheduler.add(_pending(task_id, task))
        return future

    def take(self, worker_id: int, n: int, live: list[int]) -> list[tuple[int, Entry]]:
        """The next batch for a free worker (see Scheduler.next_batch)."""
        return [(t, self.entries[t]) for t in self.scheduler.next_batch(worker_id, n, live)]

    def resolve(self, task_id: int, result: ChunkResult) -> Entry | None:
        """A chunk's result arrived; None when nobody waits for it any more."""
        entry = self.entries.pop(task_id, None)
        if entry is None or entry.future.cancelled():
            return None
        self._settle.append((entry.future, result))
        return entry

    def requeue(self, task_id: int, avoid: int | None = None) -> None:
        entry = self.entries.get(task_id)
        if entry is None:
            return
        pending = _pending(task_id, entry.task)
        if avoid is not None:
            pending.avoid.add(avoid)
        self.scheduler.add(pending)

    def failed_attempt(self, task_id: int, worker_id: int, text: str, count: bool = True) -> bool:
        """Retry the chunk elsewhere, or fail it after ``max_attempts``; False if unknown.

        ``count=False``: the attempt does not count (a batch that failed as a whole, an
        out-of-memory error): the chunk is requeued as it was.
        """
        entry = self.entries.get(task_id)
        if entry is None:
            return False
        if count:
            entry.attempts += 1
        entry.last_error = text
        if entry.attempts >= self.max_attempts:
            del self.entries[task_id]
            task = entry.task
            self._settle.append(
                (
                    entry.future,
                    ChunkFailedError(
                        f"chunk {task.index} of {task.group} ({task.duration_s:.1f} s) failed "
                        f"{entry.attempts} times: {text}",
                        entry.attempts,
                    ),
                )
            )
            return True
        self.retries += 1
        self.requeue(task_id, avoid=worker_id if count else None)
        return True

    def cancel_group(self, group: str) -> list[Future[ChunkResult]]:
        """Remove a group's queued chunks; their Futures, for the caller to cancel."""
        return [self.entries.pop(t).future for t in self.scheduler.remove_group(group)]

    def cancel_queued(self) -> list[Future[ChunkResult]]:
        return [self.entries.pop(t).future for t in self.scheduler.drain()]

    def fail_queued(self, reason: str) -> None:
        for task_id in self.scheduler.drain():
            self._settle.append((self.entries.pop(task_id).future, WhisperSubsError(reason)))

    def abandon(self) -> list[Future[ChunkResult]]:
        """Everything still owed (the pool is closing): the Futures, for the caller to cancel."""
        futures = [entry.future for entry in self.entries.values()]
        self.entries.clear()
        self.scheduler.drain()
        return futures

    def take_settled(self) -> list[tuple[Future[ChunkResult], Outcome]]:
        settled, self._settle = self._settle, []
        return settled


class PoolBase:
    """What both back ends share: the lock, the ledger, readiness, submit and cancel, events.

    A subclass runs the dispatcher and says how to wake it (``_kick``).
    """

    def __init__(
        self, max_attempts: int, on_event: Callable[[str, dict[str, Any]], None] | None
    ) -> None:
        self._on_event = on_event
        self._lock = threading.Lock()
        # Futures are settled after the lock is released: their callbacks may call status().
        self._ledger = ChunkLedger(max_attempts)
        self._closing = False
        self._broken: str | None = None
        self._ready = threading.Event()

    def _kick(self) -> None:
        """Wake the dispatcher: there is new work."""
        raise NotImplementedError

    def submit(self, task: ChunkTask) -> Future[ChunkResult]:
        with self._lock:
            if self._broken is not None:
                failed: Future[ChunkResult] = Future()
                failed.set_exception(WhisperSubsError(self._broken))
                return failed
            if self._closing:
                raise WhisperSubsError("the pool is closed")
            future = self._ledger.add(task)
        self._kick()
        return future

    def cancel_group(self, group: str) -> int:
        """Drop a group's queued chunks at once (their Futures are cancelled); returns how many."""
        with self._lock:
            futures = self._ledger.cancel_group(group)
        for future in futures:
            cancel(future)
        return len(futures)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until at least one worker has its model loaded (or the pool is broken)."""
        self._ready.wait(timeout)
        if self._broken is not None:
            raise WhisperSubsError(self._broken)
        return self._ready.is_set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._broken is None

    def _break(self, reason: str) -> None:
        """Nothing can run the chunks any more: fail the queued ones, report it."""
        self._broken = reason
        self._ready.set()
        self._ledger.fail_queued(reason)

    def _emit(self, kind: str, **data: Any) -> None:
        if self._on_event is not None:
            try:
                self._on_event(kind, data)
            except Exception:  # a listener's bug must not stop the dispatcher
                log.exception("pool event listener failed on %s", kind)


def settle(outcomes: list[tuple[Future[ChunkResult], Outcome]]) -> None:
    """Resolve Futures (outside the pool's lock)."""
    for future, outcome in outcomes:
        if future.cancelled():
            continue
        if outcome is None:
            cancel(future)
        elif isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def cancel(future: Future[ChunkResult]) -> None:
    """Cancel so that ``concurrent.futures.wait``/``as_completed`` see it too.

    ``Future.cancel`` alone wakes ``result()`` callers but not the waiters those two install.
    """
    if future.cancel():
        future.set_running_or_notify_cancel()


def _pending(task_id: int, task: ChunkTask) -> Pending:
    return Pending(task_id, task.group, task.priority, task.duration_s, task.options)
