"""A pool of persistent worker processes, one per device slot, that pull chunks.

Each worker is a ``spawn``ed process that sets its device environment (``CUDA_VISIBLE_DEVICES``,
thread counts) before the engine is imported, loads its model once, and then serves batches of
chunks from every input of the run (or every job of the server) until the pool closes.

One dispatcher thread in the parent owns all bookkeeping: it waits on the workers' pipes and
process sentinels, resolves each chunk's Future, and hands a free worker its next batch
(``scheduling.Scheduler``: priority, fairness between groups, longest first). A chunk that raises
is retried once on another worker and then fails its Future with ChunkFailedError; a worker that
dies (even by SIGKILL) is replaced and its chunks go back in the queue; an out-of-memory error
takes a slot away from that device (or halves its batch) and requeues the chunk without counting
an attempt. Nothing is dropped silently.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from .capacity import OomAction, shrink_after_oom
from .engine import DecodeOptions, EngineSpec
from .errors import OutOfMemoryError, WhisperSubsError
from .ledger import PoolBase, cancel, settle
from .types import SAMPLE_RATE

log = logging.getLogger(__name__)

MAX_LOAD_FAILURES = 3  # consecutive worker start failures on a device before it is given up


@dataclass(frozen=True, slots=True)
class DeviceSlots:
    """Workers to run on one device: the pool's view of a capacity-plan entry."""

    device_id: str  # "cpu", "cuda:0", ...
    slots: int
    engine: EngineSpec
    env: dict[str, str] = field(default_factory=dict)  # set in the worker before the engine loads
    batch_size: int = 1


@dataclass(frozen=True, slots=True)
class ChunkTask:
    """One chunk to transcribe. ``group`` is the input file or job it belongs to."""

    group: str
    index: int
    audio: np.ndarray
    options: DecodeOptions
    priority: int = 0

    @property
    def duration_s(self) -> float:
        return self.audio.size / SAMPLE_RATE

    @property
    def tag(self) -> str:
        return f"{self.group}-{self.index}"


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    device_id: str
    slots: int  # workers it may run now
    workers: int  # workers running (loading or ready)
    active: int  # chunks being transcribed on it
    batch_size: int
    done: int
    failures: int
    oom_events: int


@dataclass(frozen=True, slots=True)
class PoolStatus:
    devices: tuple[DeviceStatus, ...]
    max_concurrent: int
    active: int
    queued: int
    model_loads: int
    worker_deaths: int
    retries: int

    def to_json(self) -> dict[str, Any]:
        return {
            "devices": [
                {
                    "id": d.device_id,
                    "slots": d.slots,
                    "workers": d.workers,
                    "active": d.active,
                    "queued": self.queued,
                    "batch_size": d.batch_size,
                    "done": d.done,
                    "failures": d.failures,
                    "oom_events": d.oom_events,
                }
                for d in self.devices
            ],
            "max_concurrent": self.max_concurrent,
            "active": self.active,
            "queued": self.queued,
            "model_loads": self.model_loads,
            "worker_deaths": self.worker_deaths,
            "retries": self.retries,
        }


# -- the worker process ------------------------------------------------------------------------


def _worker_main(conn: Connection, env: dict[str, str], spec: EngineSpec) -> None:
    # Before anything imports the engine: CUDA reads CUDA_VISIBLE_DEVICES once, at its start.
    os.environ.update(env)
    logging.basicConfig(level=os.environ.get("WHISPER_SUBS_WORKER_LOG", "WARNING"))
    from .engine import load_engine

    started = time.perf_counter()
    try:
        engine = load_engine(spec)
    except WhisperSubsError as exc:
        conn.send(("load_failed", str(exc)))
        return
    except Exception as exc:  # a foreign error at load: report it, the parent decides
        conn.send(("load_failed", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", time.perf_counter() - started))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if message[0] == "stop":
            return
        _, task_ids, audios, options, tags = message
        started = time.perf_counter()
        try:
            results = engine.transcribe(audios, options, tags)
        except OutOfMemoryError as exc:
            conn.send(("oom", task_ids, str(exc)))
        except Exception as exc:  # reported to the parent, which retries elsewhere
            conn.send(("error", task_ids, f"{type(exc).__name__}: {exc}"))
        else:
            conn.send(("done", task_ids, results, time.perf_counter() - started))


# -- the parent side ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Worker:
    id: int
    device_id: str
    process: Any  # multiprocessing.Process (spawn context)
    conn: Connection
    ready: bool = False
    retiring: bool = False
    in_flight: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Device:
    spec: DeviceSlots
    slots: int
    batch_size: int
    done: int = 0
    failures: int = 0
    oom_events: int = 0
    load_failures: int = 0
    load_error: str | None = None


class WorkerPool(PoolBase):
    """Persistent workers over one or more devices; ``submit`` returns a Future per chunk."""

    def __init__(
        self,
        devices: Sequence[DeviceSlots],
        *,
        max_attempts: int = 2,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        if not devices or sum(d.slots for d in devices) < 1:
            raise WhisperSubsError("the pool needs at least one worker slot")
        self._ctx = mp.get_context("spawn")
        self._devices = {d.device_id: _Device(d, d.slots, max(1, d.batch_size)) for d in devices}
        super().__init__(max_attempts, on_event)
        self._workers: dict[int, _Worker] = {}
        self._worker_ids = itertools.count()
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._model_loads = 0
        self._deaths = 0
        with self._lock:
            for device in self._devices.values():
                for _ in range(device.slots):
                    self._spawn(device)
        self._thread = threading.Thread(target=self._run, name="whisper-subs-pool", daemon=True)
        self._thread.start()

    # -- public API (submit, cancel_group, wait_ready: PoolBase) -------------------------------

    def status(self) -> PoolStatus:
        with self._lock:
            devices = []
            for device_id, device in self._devices.items():
                workers = [w for w in self._workers.values() if w.device_id == device_id]
                devices.append(
                    DeviceStatus(
                        device_id=device_id,
                        slots=device.slots,
                        workers=len(workers),
                        active=sum(len(w.in_flight) for w in workers),
                        batch_size=device.batch_size,
                        done=device.done,
                        failures=device.failures,
                        oom_events=device.oom_events,
                    )
                )
            return PoolStatus(
                devices=tuple(devices),
                max_concurrent=sum(d.slots for d in self._devices.values()),
                active=sum(d.active for d in devices),
                queued=self._ledger.queued,
                model_loads=self._model_loads,
                worker_deaths=self._deaths,
                retries=self._ledger.retries,
            )

    def set_slots(self, device_id: str, slots: int) -> None:
        """Re-plan one device (e.g. after a fresh free-memory reading): grow or shrink it."""
        with self._lock:
            self._devices[device_id].slots = max(0, slots)
            self._fit_workers(device_id)
        self._wake()

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            futures = self._ledger.cancel_queued()
        for future in futures:
            cancel(future)
        self._wake()
        self._thread.join(timeout)
        for worker in list(self._workers.values()):
            _stop_process(worker, timeout=2.0)
        with self._lock:  # chunks still in flight when the dispatcher gave up: nobody waits
            left = self._ledger.abandon()
        for future in left:
            cancel(future)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- dispatcher ----------------------------------------------------------------------------

    def _kick(self) -> None:
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send_bytes(b"1")

    def _spawn(self, device: _Device) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", **device.spec.env}
        threads = device.spec.engine.cpu_threads
        if device.spec.engine.device == "cpu" and threads:
            env.setdefault("OMP_NUM_THREADS", str(threads))
        process = self._ctx.Process(
            target=_worker_main,
            args=(child, env, device.spec.engine),
            name=f"whisper-subs-{device.spec.device_id}",
            daemon=True,
        )
        process.start()
        child.close()
        worker = _Worker(next(self._worker_ids), device.spec.device_id, process, parent)
        self._workers[worker.id] = worker
        log.debug("started worker %d on %s (pid %s)", worker.id, worker.device_id, process.pid)

    def _fit_workers(self, device_id: str) -> None:
        device = self._devices[device_id]
        workers = [w for w in self._workers.values() if w.device_id == device_id and not w.retiring]
        for _ in range(device.slots - len(workers)):
            if device.load_error is None and not self._closing:
                self._spawn(device)
        for worker in sorted(workers, key=lambda w: len(w.in_flight))[
            : max(0, len(workers) - device.slots)
        ]:
            worker.retiring = True  # stops once its current batch is done
            if not worker.in_flight:
                self._retire(worker)

    def _retire(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.conn.send(("stop",))

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closing and not any(w.in_flight for w in self._workers.values()):
                    break
                conns = {w.conn: w for w in self._workers.values()}
                sentinels = {w.process.sentinel: w for w in self._workers.values()}
            ready = wait([self._wake_r, *conns, *sentinels], timeout=1.0)
            with self._lock:
                for item in ready:
                    if item is self._wake_r:
                        while self._wake_r.poll():
                            self._wake_r.recv_bytes()
                    elif item in conns:
                        self._on_message(conns[item])
                for item in ready:
                    if item in sentinels:
                        self._on_exit(sentinels[item])
                self._dispatch()
                outcomes = self._ledger.take_settled()
            settle(outcomes)

    def _on_message(self, worker: _Worker) -> bool:
        """Handle one message from ``worker``; False when its pipe is closed (it is gone)."""
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            return False  # the sentinel reports the death
        kind = message[0]
        device = self._devices[worker.device_id]
        if kind == "ready":
            worker.ready = True
            device.load_failures = 0
            self._model_loads += 1
            self._ready.set()
            self._emit("worker_ready", worker=worker.id, device=worker.device_id, load_s=message[1])
        elif kind == "load_failed":
            device.load_failures += 1
            log.error(
                "worker %d on %s could not load the model: %s",
                worker.id,
                worker.device_id,
                message[1],
            )
            device.load_error = message[1]  # a load error is not transient: stop respawning
        elif kind == "done":
            _, task_ids, results, seconds = message
            worker.in_flight = []
            for task_id, result in zip(task_ids, results, strict=True):
                entry = self._ledger.resolve(task_id, result)
                device.done += 1
                if entry is not None:
                    self._emit(
                        "chunk_done",
                        group=entry.task.group,
                        index=entry.task.index,
                        device=worker.device_id,
                        audio_s=entry.task.duration_s,
                        seconds=seconds / max(1, len(task_ids)),
                    )
            if worker.retiring:
                self._retire(worker)
        elif kind == "oom":
            _, task_ids, text = message
            worker.in_flight = []
            self._on_oom(worker, device, task_ids, text)
        elif kind == "error":
            _, task_ids, text = message
            worker.in_flight = []
            log.warning(
                "worker %d on %s failed a batch of %d: %s",
                worker.id,
                worker.device_id,
                len(task_ids),
                text,
            )
            for task_id in task_ids:
                # A failed batch of several is retried one chunk at a time (below, by attempts).
                self._failed_attempt(task_id, worker, text, count=len(task_ids) == 1)
            if worker.retiring:
                self._retire(worker)
        return True

    def _on_oom(self, worker: _Worker, device: _Device, task_ids: list[int], text: str) -> None:
        device.oom_events += 1
        decision = shrink_after_oom(max(1, device.slots), device.batch_size)
        log.warning("out of memory on %s (%s): %s", worker.device_id, text, decision.reason)
        self._emit(
            "oom",
            device=worker.device_id,
            action=decision.action.value,
            slots=decision.slots,
            batch_size=decision.batch_size,
        )
        if decision.action is OomAction.GIVE_UP:
            device.slots = 0
            worker.retiring = True
            self._retire(worker)
            for task_id in task_ids:
                self._failed_attempt(task_id, worker, f"out of memory on {worker.device_id}")
            if not any(d.slots > 0 for d in self._devices.values()):
                self._break(f"out of memory on every device: {decision.reason}")
            return
        device.slots, device.batch_size = decision.slots, decision.batch_size
        for task_id in task_ids:
            self._requeue(task_id)
        if decision.action is OomAction.DROP_SLOT:
            worker.retiring = True
            self._retire(worker)

    def _on_exit(self, worker: _Worker) -> None:
        # What it said before it went. At EOF poll() stays True: stop when recv finds the end.
        while worker.conn.poll() and self._on_message(worker):
            pass
        worker.process.join(0.1)
        self._workers.pop(worker.id, None)
        worker.conn.close()
        device = self._devices[worker.device_id]
        if self._closing:
            return
        if worker.retiring:  # it was told to stop; whatever it still held goes back
            for task_id in worker.in_flight:
                self._requeue(task_id)
            return
        if not worker.ready:
            device.load_failures += 1
            if device.load_failures >= MAX_LOAD_FAILURES and device.load_error is None:
                device.load_error = f"workers on {worker.device_id} die while loading the model"
        else:
            self._deaths += 1
            log.warning(
                "worker %d on %s died (exit code %s); requeueing %d chunk(s)",
                worker.id,
                worker.device_id,
                worker.process.exitcode,
                len(worker.in_flight),
            )
            self._emit("worker_died", device=worker.device_id, exitcode=worker.process.exitcode)
        for task_id in worker.in_flight:
            self._failed_attempt(
                task_id, worker, f"worker died (exit code {worker.process.exitcode})"
            )
        if device.load_error is None:
            self._spawn(device)
        elif not any(d.load_error is None for d in self._devices.values()):
            self._break(device.load_error)

    def _failed_attempt(self, task_id: int, worker: _Worker, text: str, count: bool = True) -> None:
        if self._ledger.failed_attempt(task_id, worker.id, text, count) and count:
            self._devices[worker.device_id].failures += 1

    def _requeue(self, task_id: int) -> None:
        self._ledger.requeue(task_id)

    def _dispatch(self) -> None:
        live = [w.id for w in self._workers.values() if w.ready and not w.retiring]
        for worker in list(self._workers.values()):
            if not worker.ready or worker.retiring or worker.in_flight:
                continue
            device = self._devices[worker.device_id]
            # Near the end of the queue, smaller batches: every idle worker gets a share of the
            # tail instead of one worker taking a full batch while the others wait.
            idle = sum(1 for w in self._workers.values() if w.id in live and not w.in_flight)
            fair_share = -(-self._ledger.queued // max(1, idle))
            size = max(1, min(device.batch_size, fair_share))
            batch = self._ledger.take(worker.id, size, live)
            if not batch:
                continue
            task_ids = [task_id for task_id, _ in batch]
            entries = [entry for _, entry in batch]
            try:
                worker.conn.send(
                    (
                        "batch",
                        task_ids,
                        [e.task.audio for e in entries],
                        entries[0].task.options,
                        [e.task.tag for e in entries],
                    )
                )
            except OSError:
                for task_id in task_ids:
                    self._requeue(task_id)
                continue
            worker.in_flight = task_ids


def _stop_process(worker: _Worker, timeout: float) -> None:
    with contextlib.suppress(OSError):
        worker.conn.send(("stop",))
    worker.process.join(timeout)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join(timeout)
