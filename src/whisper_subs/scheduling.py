"""Which chunks a free worker takes next: pure bookkeeping, no processes.

Workers pull; they are never assigned round-robin. A free worker asks for up to ``n`` chunks and
gets, from the highest priority present, the group (an input file or a job) that has been served
the fewest audio seconds so far (so a short job behind a long one finishes first), its longest
chunks first (so the longest work starts early and the tail is short). A batch is filled from
chunks decoded with the same options only. A chunk that failed on a worker avoids that worker
while another one is alive.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Pending:
    task_id: int
    group: str
    priority: int  # higher first
    duration_s: float
    options_key: Hashable  # chunks in one batch share it
    avoid: set[int] = field(default_factory=set)  # worker ids it failed on


class Scheduler:
    def __init__(self) -> None:
        self._pending: dict[int, Pending] = {}
        self._served_s: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, item: Pending) -> None:
        self._pending[item.task_id] = item
        self._served_s.setdefault(item.group, 0.0)

    def remove_group(self, group: str) -> list[int]:
        ids = [p.task_id for p in self._pending.values() if p.group == group]
        for task_id in ids:
            del self._pending[task_id]
        self._served_s.pop(group, None)
        return ids

    def drain(self) -> list[int]:
        """Remove and return every pending chunk."""
        ids = list(self._pending)
        self._pending.clear()
        return ids

    def queued_by_group(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self._pending.values():
            counts[p.group] = counts.get(p.group, 0) + 1
        return counts

    def next_batch(self, worker_id: int, n: int, live_workers: Iterable[int]) -> list[int]:
        """Take up to ``n`` chunks for ``worker_id``; empty when nothing suits it."""
        live = set(live_workers)
        usable = [p for p in self._pending.values() if _may_run(p, worker_id, live)]
        if not usable or n < 1:
            return []
        top = max(p.priority for p in usable)
        candidates = [p for p in usable if p.priority == top]
        first_group = min(candidates, key=lambda p: (self._served_s[p.group], p.group)).group
        first = max(
            (p for p in candidates if p.group == first_group),
            key=lambda p: (p.duration_s, -p.task_id),
        )
        same = [p for p in candidates if p.options_key == first.options_key and p is not first]
        # Fill from the first chunk's group, then from the least-served other groups.
        same.sort(key=lambda p: (p.group != first_group, self._served_s[p.group], -p.duration_s))
        batch = [first, *same[: n - 1]]
        for p in batch:
            del self._pending[p.task_id]
            self._served_s[p.group] = self._served_s.get(p.group, 0.0) + p.duration_s
        return [p.task_id for p in batch]


def _may_run(item: Pending, worker_id: int, live: set[int]) -> bool:
    if worker_id not in item.avoid:
        return True
    return not (live - item.avoid)  # every live worker failed it: let this one try again
