"""Prometheus metrics of one service, in a registry of its own (one per app, so tests and several
apps in one process never share counters).

Counters and the histogram are fed by the service's events as they happen (``chunk_done``,
``job_finished``, ...); gauges that describe the present (jobs by state, the pool's queue,
workers, GPU memory) are read from the service when Prometheus scrapes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .devices import discover_gpus
from .jobs import Job
from .service import Service

log = logging.getLogger(__name__)

PREFIX = "whisper_subs"
# Chunks are at most 30 s of audio; a CPU worker may take a minute on a large model.
CHUNK_SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
_MIB = 1024 * 1024


class _StateCollector(Collector):
    """Gauges read from the service at scrape time."""

    def __init__(self, service: Service) -> None:
        self._service = service

    def describe(self) -> list[Metric]:
        return []  # no collect() at registration: the service may not be started yet

    def collect(self) -> Iterator[Metric]:
        service = self._service
        ready = GaugeMetricFamily(f"{PREFIX}_ready", "1 once a worker has its model loaded")
        ready.add_metric([], 1.0 if service.ready else 0.0)
        yield ready
        try:
            status = service.status()
        except Exception:  # not started, or stopping: only the ready gauge
            log.debug("metrics: service status unavailable", exc_info=True)
            return
        jobs = GaugeMetricFamily(f"{PREFIX}_jobs", "Jobs in the store by state", labels=["state"])
        for state, n in status.jobs.items():
            jobs.add_metric([state.value], n)
        yield jobs
        pool = status.pool
        queue = GaugeMetricFamily(f"{PREFIX}_queue_depth", "Chunks waiting for a worker")
        active = GaugeMetricFamily(f"{PREFIX}_chunks_active", "Chunks being transcribed now")
        running = GaugeMetricFamily(f"{PREFIX}_jobs_running_here", "Jobs this process runs now")
        running.add_metric([], len(status.running))
        workers = GaugeMetricFamily(
            f"{PREFIX}_workers", "Worker processes running (loading or ready)", labels=["device"]
        )
        slots = GaugeMetricFamily(
            f"{PREFIX}_worker_slots", "Workers each device may run now", labels=["device"]
        )
        loads = CounterMetricFamily(f"{PREFIX}_model_loads", "Model loads since start")
        deaths = CounterMetricFamily(
            f"{PREFIX}_worker_deaths", "Workers that died and were replaced"
        )
        if pool is not None:
            queue.add_metric([], pool.queued)
            active.add_metric([], pool.active)
            for device in pool.devices:
                workers.add_metric([device.device_id], device.workers)
                slots.add_metric([device.device_id], device.slots)
            loads.add_metric([], pool.model_loads)
            deaths.add_metric([], pool.worker_deaths)
        yield from (queue, active, running, workers, slots, loads, deaths)
        yield from self._gpu_memory()

    def _gpu_memory(self) -> Iterator[Metric]:
        total = GaugeMetricFamily(
            f"{PREFIX}_gpu_memory_total_bytes", "GPU memory in all", labels=["device", "name"]
        )
        free = GaugeMetricFamily(
            f"{PREFIX}_gpu_memory_free_bytes", "GPU memory free now", labels=["device", "name"]
        )
        for gpu in discover_gpus(self._service.settings.workers.fake_gpus):
            total.add_metric([gpu.id, gpu.name], gpu.memory_total_mb * _MIB)
            free.add_metric([gpu.id, gpu.name], gpu.memory_free_mb * _MIB)
        yield from (total, free)


class ServiceMetrics:
    """The metrics of ``service`` in ``registry`` (a new one when not given)."""

    def __init__(self, service: Service, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.chunk_seconds = Histogram(
            f"{PREFIX}_chunk_seconds", "Worker time per chunk (batch time shared by its chunks)",
            ["device"], buckets=CHUNK_SECONDS_BUCKETS, registry=r,
        )  # fmt: skip
        self.audio_seconds = Counter(
            f"{PREFIX}_audio_seconds", "Audio seconds transcribed (chunks done)", registry=r
        )
        self.chunks = Counter(f"{PREFIX}_chunks", "Chunks transcribed", ["device"], registry=r)
        self.job_ends = Counter(
            f"{PREFIX}_jobs_finished", "Jobs that ended, by outcome", ["outcome"], registry=r
        )
        self.realtime = Gauge(
            f"{PREFIX}_realtime_factor",
            "Audio seconds per wall second of the last job done (x realtime)",
            registry=r,
        )
        self.oom = Counter(f"{PREFIX}_oom_events", "Out-of-memory events", ["device"], registry=r)
        r.register(_StateCollector(service))
        service.add_listener(self.on_event)

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "chunk_done":
            device = str(data.get("device", ""))
            self.chunk_seconds.labels(device).observe(float(data.get("seconds", 0.0)))
            self.audio_seconds.inc(float(data.get("audio_s", 0.0)))
            self.chunks.labels(device).inc()
        elif kind == "oom":
            self.oom.labels(str(data.get("device", ""))).inc()
        elif kind.startswith("job_"):
            outcome = kind.removeprefix("job_")
            self.job_ends.labels(outcome).inc()
            job: Job = data["job"]
            wall_s = float(data.get("wall_s", 0.0))
            if outcome == "finished" and job.duration and wall_s > 0:
                self.realtime.set(job.duration / wall_s)
