from __future__ import annotations

from concurrent.futures import wait

import numpy as np
import pytest

from whisper_subs.engine import DecodeOptions
from whisper_subs.errors import ChunkFailedError
from whisper_subs.ledger import ChunkLedger, cancel, settle
from whisper_subs.pool import ChunkTask
from whisper_subs.types import ChunkResult


def task(index: int, seconds: float = 1.0) -> ChunkTask:
    return ChunkTask("g", index, np.zeros(int(16000 * seconds), np.float32), DecodeOptions())


def test_a_chunk_is_retried_away_from_its_worker_then_failed() -> None:
    ledger = ChunkLedger(max_attempts=2)
    future = ledger.add(task(0))
    [(task_id, _)] = ledger.take(worker_id=1, n=4, live=[1, 2])
    assert ledger.failed_attempt(task_id, 1, "boom")
    assert ledger.take(worker_id=1, n=4, live=[1, 2]) == []  # avoids the worker it failed on
    [(again, _)] = ledger.take(worker_id=2, n=4, live=[1, 2])
    assert ledger.failed_attempt(again, 2, "boom again")
    settle(ledger.take_settled())
    with pytest.raises(ChunkFailedError, match="failed 2 times: boom again"):
        future.result(0)
    assert ledger.retries == 1 and not ledger.entries


def test_results_and_cancellations_reach_waiters() -> None:
    ledger = ChunkLedger(max_attempts=2)
    done, dropped = ledger.add(task(0, 2.0)), ledger.add(task(1))
    [(task_id, entry)] = ledger.take(worker_id=1, n=1, live=[1])  # the longest first
    assert entry.task.index == 0
    ledger.resolve(task_id, ChunkResult((), "en"))
    for future in ledger.cancel_group("g"):
        cancel(future)
    settle(ledger.take_settled())
    _, pending = wait([done, dropped], timeout=1)
    assert not pending and dropped.cancelled() and done.result().language == "en"
