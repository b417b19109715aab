"""The worker pool: failures, out-of-memory, pull scheduling, cancellation, live status.

Every test runs real worker processes. The SIGKILL test runs the real engine (tiny.en on the
CPU); the others are about scheduling and failure and use the FakeEngine, as each name says.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import shared_file
from whisper_subs.chunking import ChunkOptions
from whisper_subs.engine import DecodeOptions, EngineSpec, FakeBehaviour
from whisper_subs.errors import ChunkFailedError, ModelNotFoundError, WhisperSubsError
from whisper_subs.media import decode_audio
from whisper_subs.pipeline import PipelineOptions, collect, finish, prepare
from whisper_subs.pool import ChunkTask, DeviceSlots, PoolStatus, WorkerPool
from whisper_subs.types import SAMPLE_RATE, ChunkResult

pytestmark = pytest.mark.timeout(60)

CHAPTER = "derived/ljspeech_LJ001-0001-0032_chapter_concat.flac"
OPTIONS = DecodeOptions(language="en")


class Events:
    """The pool's events, for waiting on them (called in the dispatcher thread)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self._cond = threading.Condition()

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        with self._cond:
            self.items.append((kind, data))
            self._cond.notify_all()

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._cond:
            return [data for k, data in self.items if k == kind]

    def wait_for(self, kind: str, count: int, timeout: float = 30.0) -> None:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: sum(k == kind for k, _ in self.items) >= count, timeout
            )
        assert ok, f"waited {timeout} s for {count} {kind!r} event(s): {self.items}"


def fake(**behaviour: Any) -> EngineSpec:
    return EngineSpec("fake", fake=FakeBehaviour(**behaviour))


def chunk(index: int, seconds: float, group: str = "g", priority: int = 0) -> ChunkTask:
    audio = np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)
    return ChunkTask(group, index, audio, OPTIONS, priority)


def marker(directory: Path, tag: str, kind: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{tag}.{kind}").touch()
    return str(directory)


def device(status: PoolStatus, device_id: str) -> Any:
    return next(d for d in status.devices if d.device_id == device_id)


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def pools() -> Iterator[list[WorkerPool]]:
    """Pools a test makes are closed even when it fails."""
    made: list[WorkerPool] = []
    yield made
    for pool in made:
        pool.close()


def start(pools: list[WorkerPool], devices: list[DeviceSlots], events: Events) -> WorkerPool:
    pool = WorkerPool(devices, on_event=events)
    pools.append(pool)
    return pool


# -- the real engine ---------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_sigkill_of_a_real_engine_worker_mid_chunk_loses_nothing(
    events: Events, pools: list[WorkerPool]
) -> None:
    from whisper_subs.models import resolve_model

    try:
        model = resolve_model("tiny.en").location
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))
    audio = decode_audio(shared_file(CHAPTER))[: 45 * SAMPLE_RATE]
    # Greedy and no temperature fallback (it samples): two runs must give the same text.
    options = PipelineOptions(
        decode=DecodeOptions(language="en", beam_size=1, temperatures=(0.0,)),
        chunking=ChunkOptions(max_chunk_s=12, min_chunk_s=6),
    )
    prepared = prepare(audio, options)
    assert len(prepared.chunks) >= 3
    before = {p.pid for p in multiprocessing.active_children()}
    spec = EngineSpec(model, "cpu", "int8", cpu_threads=1)
    slots = DeviceSlots("cpu", 2, spec, {"OMP_NUM_THREADS": "1"}, batch_size=1)
    pool = start(pools, [slots], events)
    events.wait_for("worker_ready", 2, timeout=120)
    workers = [p for p in multiprocessing.active_children() if p.pid not in before]
    assert len(workers) == 2

    def run(group: str, during: Callable[[], None] = lambda: None) -> str:
        futures = {t.index: pool.submit(t) for t in prepared.tasks(group, options.decode)}
        during()
        results, errors = collect(prepared, futures)
        assert errors == [] and sorted(results) == [c.index for c in prepared.chunks]
        transcript = finish(prepared, results, errors, options)
        return " ".join(s.text.strip() for s in transcript.segments)

    clean = run("clean")
    assert "printing" in clean.lower()

    def kill_one_mid_chunk() -> None:
        assert eventually(lambda: pool.status().active == 2), "both workers never got a chunk"
        time.sleep(0.1)  # inside the chunk just handed out: one takes seconds on one thread
        os.kill(workers[0].pid, signal.SIGKILL)

    killed = run("killed", kill_one_mid_chunk)
    assert killed == clean
    events.wait_for("worker_ready", 3, timeout=120)  # the replacement loaded its model
    status = pool.status()
    assert status.worker_deaths == 1
    assert status.model_loads == 3
    assert status.retries == 1  # the chunk it held went back to the queue
    assert len(events.of("worker_died")) == 1


# -- out of memory -----------------------------------------------------------------------------


def test_injected_oom_on_one_fake_gpu_drops_a_slot_and_loses_no_chunk(
    tmp_path: Path, events: Events, pools: list[WorkerPool]
) -> None:
    # Both fake GPUs look at the same marker: whichever runs chunk g-3 runs out of memory, once.
    oom_dir = marker(tmp_path, "g-3", "oom")
    behaviour = {"seconds_per_audio_s": 0.01, "oom_marker_dir": oom_dir}
    gpus = [
        DeviceSlots("cuda:0", 2, EngineSpec("fake", "cuda", fake=FakeBehaviour(**behaviour))),
        DeviceSlots("cuda:1", 2, EngineSpec("fake", "cuda", fake=FakeBehaviour(**behaviour))),
    ]
    pool = start(pools, gpus, events)
    futures = [pool.submit(chunk(i, 5.0)) for i in range(12)]
    wait_futures(futures, timeout=30)
    assert all(f.result().segments[0].text == f" fake transcript of g-{i}"
               for i, f in enumerate(futures))  # fmt: skip

    (oom,) = events.of("oom")
    hit, other = oom["device"], ({"cuda:0", "cuda:1"} - {oom["device"]}).pop()
    assert oom["action"] == "drop_slot" and oom["slots"] == 1
    assert eventually(lambda: device(pool.status(), hit).workers == 1)  # one worker stopped
    status = pool.status()
    assert device(status, hit).slots == 1 and device(status, hit).oom_events == 1
    assert device(status, other).slots == 2 and device(status, other).oom_events == 0
    assert status.max_concurrent == 3
    assert status.retries == 0  # requeued without counting an attempt
    assert sum(d.done for d in status.devices) == 12
    assert not (tmp_path / "g-3.oom").exists()


# -- failures ----------------------------------------------------------------------------------


def test_fake_chunk_that_always_fails_is_retried_once_elsewhere_then_fails(
    tmp_path: Path, events: Events, pools: list[WorkerPool]
) -> None:
    fail_dir = marker(tmp_path, "g-0", "fail")
    devices = [
        DeviceSlots(name, 1, fake(seconds_per_audio_s=0.01, fail_marker_dir=fail_dir))
        for name in ("a", "b")
    ]
    pool = start(pools, devices, events)
    # A retry avoids the worker that failed only while another is ready: wait for both.
    events.wait_for("worker_ready", 2)
    futures = [pool.submit(chunk(i, 2.0)) for i in range(4)]
    wait_futures(futures, timeout=30)
    with pytest.raises(ChunkFailedError, match=r"chunk 0 of g .*failed 2 times.*fake failure"):
        futures[0].result()
    assert all(isinstance(f.result(), ChunkResult) for f in futures[1:])
    status = pool.status()
    assert status.retries == 1
    # Its two attempts ran on two different workers, one per device.
    assert device(status, "a").failures == 1 and device(status, "b").failures == 1


def test_fake_chunk_that_fails_once_succeeds_on_retry(
    tmp_path: Path, events: Events, pools: list[WorkerPool]
) -> None:
    # Only device a fails the chunk (a bad device, a transient fault): the retry on b succeeds.
    fail_dir = marker(tmp_path, "g-0", "fail")
    devices = [
        DeviceSlots("a", 1, fake(fail_marker_dir=fail_dir)),
        DeviceSlots("b", 1, fake()),
    ]
    pool = start(pools, devices, events)
    events.wait_for("worker_ready", 2)
    # Both idle: the dispatcher offers the chunk to its workers in start order, so a first.
    future = pool.submit(chunk(0, 2.0))
    result = future.result(timeout=30)
    assert result.segments[0].text == " fake transcript of g-0"
    status = pool.status()
    assert status.retries == 1
    assert device(status, "a").failures == 1 and device(status, "a").done == 0
    assert device(status, "b").done == 1
    assert status.worker_deaths == 0


def test_fake_worker_crash_is_replaced_and_its_chunk_requeued(
    tmp_path: Path, events: Events, pools: list[WorkerPool]
) -> None:
    crash_dir = marker(tmp_path, "g-0", "crash")
    devices = [DeviceSlots("cpu", 2, fake(seconds_per_audio_s=0.01, crash_marker_dir=crash_dir))]
    pool = start(pools, devices, events)
    futures = [pool.submit(chunk(i, 3.0)) for i in range(6)]
    wait_futures(futures, timeout=30)
    assert [f.result().segments[0].text for f in futures] == [
        f" fake transcript of g-{i}" for i in range(6)
    ]
    events.wait_for("worker_ready", 3)
    status = pool.status()
    assert status.worker_deaths == 1
    assert status.retries == 1
    assert status.model_loads == 3
    assert device(status, "cpu").workers == 2
    (died,) = events.of("worker_died")
    assert died["exitcode"] == 17


def test_fake_model_load_failure_is_a_clear_error_not_a_hang(
    pools: list[WorkerPool], events: Events, tmp_path: Path
) -> None:
    # A real engine over a folder with no model in it (no fake): the load fails in the worker.
    empty = tmp_path / "no-model-here"
    empty.mkdir()
    pool = start(pools, [DeviceSlots("cpu", 2, EngineSpec(str(empty), "cpu", "int8"))], events)
    started = time.monotonic()
    future = pool.submit(chunk(0, 1.0))
    with pytest.raises(WhisperSubsError, match=r"cannot load model .*no-model-here"):
        pool.wait_ready(timeout=45)
    with pytest.raises(WhisperSubsError, match="cannot load model"):
        future.result(timeout=5)
    late = pool.submit(chunk(1, 1.0))
    with pytest.raises(WhisperSubsError, match="cannot load model"):
        late.result(timeout=5)
    assert time.monotonic() - started < 45
    assert pool.status().model_loads == 0


# -- scheduling --------------------------------------------------------------------------------


def test_fake_pull_gives_a_twice_as_fast_worker_about_twice_the_chunks(
    events: Events, pools: list[WorkerPool]
) -> None:
    devices = [
        DeviceSlots("fast", 1, fake(seconds_per_audio_s=0.05)),
        DeviceSlots("slow", 1, fake(seconds_per_audio_s=0.10)),
    ]
    pool = start(pools, devices, events)
    events.wait_for("worker_ready", 2)
    futures = [pool.submit(chunk(i, 1.0)) for i in range(45)]
    wait_futures(futures, timeout=30)
    status = pool.status()
    fast, slow = device(status, "fast").done, device(status, "slow").done
    assert fast + slow == 45
    assert 1.5 <= fast / slow <= 2.7, (fast, slow)


def test_fake_chunks_run_longest_first(events: Events, pools: list[WorkerPool]) -> None:
    # The worker loads for a while, so every chunk is queued before it asks for one.
    pool = start(pools, [DeviceSlots("cpu", 1, fake(load_s=0.5))], events)
    lengths = [3.0, 9.0, 1.0, 7.0, 5.0, 9.5, 2.0]
    futures = [pool.submit(chunk(i, s)) for i, s in enumerate(lengths)]
    assert not pool.ready
    wait_futures(futures, timeout=30)
    order = [e["audio_s"] for e in events.of("chunk_done")]
    assert order == sorted(lengths, reverse=True)


def test_fake_cancel_group_drops_queued_chunks_at_once(
    events: Events, pools: list[WorkerPool]
) -> None:
    pool = start(pools, [DeviceSlots("cpu", 1, fake(seconds_per_audio_s=0.2))], events)
    events.wait_for("worker_ready", 1)
    doomed = [pool.submit(chunk(i, 2.0, group="a")) for i in range(6)]  # 0.4 s each
    kept = [pool.submit(chunk(i, 1.0, group="b")) for i in range(2)]
    assert eventually(lambda: pool.status().active == 1)
    started = time.monotonic()
    dropped = pool.cancel_group("a")
    assert time.monotonic() - started < 0.1
    cancelled = [f for f in doomed if f.cancelled()]
    assert len(cancelled) == dropped == 5  # all but the one in flight, at once
    assert pool.status().queued <= 2
    wait_futures(kept, timeout=30)
    assert all(isinstance(f.result(), ChunkResult) for f in kept)
    running = [f for f in doomed if not f.cancelled()]
    assert len(running) == 1 and isinstance(running[0].result(timeout=10), ChunkResult)


def test_fake_live_status_per_device(events: Events, pools: list[WorkerPool]) -> None:
    devices = [
        DeviceSlots("cuda:0", 2, fake(seconds_per_audio_s=0.1)),
        DeviceSlots("cuda:1", 1, fake(seconds_per_audio_s=0.1)),
    ]
    pool = start(pools, devices, events)
    events.wait_for("worker_ready", 3)
    futures: list[Future[ChunkResult]] = [pool.submit(chunk(i, 2.0)) for i in range(8)]
    assert eventually(lambda: pool.status().active == 3)
    busy = pool.status().to_json()
    assert busy["max_concurrent"] == 3 and busy["active"] == 3
    assert busy["queued"] == 5
    assert [(d["id"], d["slots"], d["active"]) for d in busy["devices"]] == [
        ("cuda:0", 2, 2),
        ("cuda:1", 1, 1),
    ]
    wait_futures(futures, timeout=30)
    done = pool.status().to_json()
    assert done["active"] == 0 and done["queued"] == 0
    assert sum(d["done"] for d in done["devices"]) == 8
    assert all(d["failures"] == 0 for d in done["devices"])
