"""``bench --simulate``: the scaling proof, on the real pool with a fake engine.

The real ``WorkerPool`` (spawned processes, its queue, pipes and dispatcher) runs N fake devices
of one slot each. Their ``FakeEngine`` sleeps in proportion to chunk length, time-scaled: one
audio second costs ``seconds_per_audio_s`` of wall time on a full-speed device (a few ms, chosen
so that the ideal makespan is ``target_ideal_s``), and ``slow_device_factor`` times that on the
slow one. Sleeping costs no CPU, so 8 "devices" run fine on 2 cores; process start-up and IPC do
cost time, so the clock starts once every worker has reported ready.

The chunk lengths are what our VAD and chunk planner make of real speech (the LJSpeech chapter
and the other clips of the shared test data, see ``real_chunk_lengths``), resampled with
replacement up to the requested minutes. Without the test data, a documented synthetic
distribution stands in (``synthetic_chunk_lengths``).

Figures, as issue 3 defines them: ideal makespan = max(total work / sum of speeds, longest chunk
/ the fastest device's speed); efficiency = ideal / measured makespan; the same for round-robin.
Round-robin is measured, not computed: one single-slot ``WorkerPool`` per device, chunk ``i``
submitted to pool ``i mod N``, so it pays the same process, pickling and pipe costs as the pull
run (a pure computation would hand it those for free). ``model_pull`` and ``model_round_robin``
predict both makespans from the chunk lengths alone; the report shows them beside the
measurements, and ``model_pull(duplicate_tail=True)`` is how tail duplication was judged.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backends import make_pool
from .chunking import ChunkOptions, plan_chunks
from .engine import DecodeOptions, EngineSpec, FakeBehaviour
from .errors import MediaError, UsageError, WhisperSubsError
from .pool import ChunkTask, DeviceSlots, WorkerPool
from .types import SAMPLE_RATE, ChunkResult
from .vad import VadOptions

log = logging.getLogger(__name__)

# Long-form speech with natural pauses; the derived chapter is 32 LJSpeech sentences joined.
CHAPTER = "derived/ljspeech_LJ001-0001-0032_chapter_concat.flac"
# Clips left out of the joined stream: the LJSpeech sentences are the chapter already, and FLEURS
# is taken in two of its five languages (its Ogg clips take ~1 s per language to decode).
_SKIP_PREFIXES = ("coqui-tts-ljspeech/",)
_FLEURS = "cuttledoc-fleurs/"
_FLEURS_LANGUAGES = ("en", "de")

EQUAL_TARGET = 0.95  # issue 3: efficiency on equal devices, 60 minutes of audio
SLOW_TARGET = 0.90  # ... with one device half as fast
GROUP = "simulate"


@dataclass(frozen=True, slots=True)
class SimulationOptions:
    """One ``bench --simulate`` run."""

    devices: int = 4  # fake devices, one slot (worker) each
    slow_device_factor: float = 1.0  # device sim:0 is this many times slower (2.0: half as fast)
    audio_minutes: float = 60.0  # audio to simulate, drawn from the chunk-length distribution
    target_ideal_s: float = 10.0  # wall seconds the ideal makespan is scaled to
    seconds_per_audio_s: float | None = None  # sleep per audio second at full speed; None: auto
    batch_size: int = 1  # chunks per engine call (the fake engine gains nothing from batching)
    seed: int = 0  # for the resampling: the same seed draws the same chunks
    round_robin: bool = True  # also measure round-robin assignment
    ready_timeout_s: float = 120.0  # for the workers to start
    testdata: Path | None = None  # the shared test-data folder; None: the synthetic lengths
    vad: VadOptions = field(default_factory=VadOptions)
    chunking: ChunkOptions = field(default_factory=ChunkOptions)
    backend: str = "local"  # the pull pool's back end: "local" processes or "ray" actors
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.devices <= 64:
            raise UsageError(
                f"--devices must be between 1 and 64 with --simulate, got {self.devices}"
            )
        if not (math.isfinite(self.slow_device_factor) and self.slow_device_factor >= 1.0):
            raise UsageError(
                f"--slow-device-factor must be at least 1 (2 = half as fast), "
                f"got {self.slow_device_factor}"
            )
        if not (math.isfinite(self.audio_minutes) and 0 < self.audio_minutes <= 24 * 60):
            raise UsageError(
                f"--audio-minutes must be above 0 and at most 1440, got {self.audio_minutes}"
            )
        if self.target_ideal_s <= 0:
            raise UsageError(f"target_ideal_s must be above 0, got {self.target_ideal_s}")
        if self.seconds_per_audio_s is not None and self.seconds_per_audio_s <= 0:
            raise UsageError(f"seconds_per_audio_s must be above 0, got {self.seconds_per_audio_s}")
        if self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {self.batch_size}")

    @property
    def speeds(self) -> tuple[float, ...]:
        """Relative speed per device: 1.0, except sim:0 at 1 / slow_device_factor."""
        return tuple(1.0 / self.slow_device_factor if i == 0 else 1.0 for i in range(self.devices))

    @property
    def target_efficiency(self) -> float:
        return EQUAL_TARGET if self.slow_device_factor == 1.0 else SLOW_TARGET


# -- the chunk lengths ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkLengths:
    """Chunk lengths in samples, and where they come from (in words)."""

    samples: tuple[int, ...]
    source: str


def default_testdata() -> Path | None:
    """``../shared/testdata`` beside the checkout, or beside the working folder; else None."""
    # src/whisper_subs/simulate.py in a checkout: the checkout's parent holds shared/.
    for root in (*Path(__file__).resolve().parents[3:4], Path.cwd().parent):
        candidate = root / "shared" / "testdata"
        if (candidate / "manifest.jsonl").is_file():
            return candidate
    return None


def real_chunk_lengths(
    testdata: Path, vad: VadOptions | None = None, chunking: ChunkOptions | None = None
) -> ChunkLengths:
    """Chunk lengths our VAD and planner make of the test data's speech.

    Two long-form inputs: the LJSpeech chapter (234 s, one reader), and the other clips joined
    end to end in manifest order (many speakers; English, Mandarin and German; each clip keeping
    its own leading and trailing silence). Joining them is deliberate: on its own, each short
    clip would be one short chunk, and short chunks balance more easily than the 24-30 s chunks
    a long input is cut into. Raises MediaError when none of it can be read.
    """
    from .media import decode_audio
    from .vad import detect_speech

    inputs: list[tuple[str, np.ndarray]] = []
    chapter = testdata / CHAPTER
    if chapter.is_file():
        inputs.append((chapter.name, decode_audio(chapter)))
    clips = []
    for relative in _manifest_clips(testdata):
        try:
            clips.append(decode_audio(testdata / relative))
        except MediaError as exc:
            log.debug("simulate: skipping %s: %s", relative, exc)
    if clips:
        inputs.append((f"{len(clips)} clips joined", np.concatenate(clips)))
    if not inputs:
        raise MediaError(f"{testdata}: no speech to draw chunk lengths from")
    samples: list[int] = []
    described = []
    for name, audio in inputs:
        spans = detect_speech(audio, vad)
        chunks = plan_chunks(spans, audio.size, chunking)
        samples.extend(c.end - c.start for c in chunks)
        described.append(f"{name} ({audio.size / SAMPLE_RATE:.0f} s, {len(chunks)} chunks)")
    return ChunkLengths(tuple(samples), "VAD chunks of " + " and ".join(described))


def _manifest_clips(testdata: Path) -> list[str]:
    path = testdata / "manifest.jsonl"
    if not path.is_file():
        return []
    clips = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        relative = str(row["file"])
        if relative.startswith(_SKIP_PREFIXES):
            continue
        if relative.startswith(_FLEURS) and row.get("language") not in _FLEURS_LANGUAGES:
            continue
        clips.append(relative)
    return clips


def synthetic_chunk_lengths(
    chunking: ChunkOptions | None = None, count: int = 400, seed: int = 0
) -> ChunkLengths:
    """Stand-in lengths when the test data is absent.

    On long-form speech the planner cuts where a chunk is between ``min_chunk_s`` and
    ``max_chunk_s`` long (with the default 24-30 s, 26 of the 28 chunks of the shared test data
    fell in that range), so 90 % are uniform in it; the other 10 % stand for the short chunks at
    the end of an input or before a long pause: uniform in 1 s to ``min_chunk_s``.
    """
    chunking = chunking or ChunkOptions()
    rng = np.random.default_rng(seed)
    lo, hi = chunking.min_chunk_s, chunking.max_chunk_s
    short = rng.random(count) < 0.1
    seconds = np.where(
        short, rng.uniform(1.0, max(1.0, lo), count), rng.uniform(max(lo, 1.0), hi, count)
    )
    return ChunkLengths(
        tuple(int(s * SAMPLE_RATE) for s in seconds),
        f"synthetic: 90 % uniform {lo:g}-{hi:g} s, 10 % uniform 1-{lo:g} s (no test data)",
    )


def draw_workload(lengths: Sequence[int], audio_s: float, seed: int = 0) -> list[int]:
    """Chunk lengths (samples) drawn with replacement until they add up to ``audio_s``.

    The last draw is cut to land on ``audio_s`` exactly (a chunk under 1 s is dropped instead).
    """
    if not lengths:
        raise ValueError("no chunk lengths to draw from")
    rng = np.random.default_rng(seed)
    target = int(audio_s * SAMPLE_RATE)
    drawn: list[int] = []
    total = 0
    while total < target:
        n = int(lengths[int(rng.integers(len(lengths)))])
        n = min(n, target - total)
        if n < SAMPLE_RATE and drawn:
            break
        drawn.append(n)
        total += n
    return drawn


# -- the pure model ---------------------------------------------------------------------------


def ideal_makespan(durations: Sequence[float], speeds: Sequence[float]) -> float:
    """max(total work / sum of speeds, longest chunk / the fastest speed), in work units."""
    if not durations:
        return 0.0
    return max(sum(durations) / sum(speeds), max(durations) / max(speeds))


def model_pull(
    durations: Sequence[float], speeds: Sequence[float], *, duplicate_tail: bool = False
) -> float:
    """Makespan of pull scheduling, longest first, with no overheads (work units).

    Each device that falls idle takes the longest chunk left (ties: the lower device index, as
    the pool's dispatcher does). With ``duplicate_tail``, a device that falls idle once the queue
    is empty starts a copy of the running chunk that would finish last, when its copy would
    finish earlier; the first result wins.
    """
    ordered = sorted(durations, reverse=True)
    free = [(0.0, i) for i in range(len(speeds))]  # (idle from, device): a heap
    finish: list[float] = []  # per chunk (in ``ordered``), its first result
    for d in ordered:
        at, device = heapq.heappop(free)
        finish.append(at + d / speeds[device])
        heapq.heappush(free, (finish[-1], device))
    if not duplicate_tail:
        return max(finish, default=0.0)
    # Every chunk has started once the queue is empty; now idle devices copy the last finisher.
    while free:
        at, device = heapq.heappop(free)
        late = [c for c in range(len(finish)) if finish[c] > at]
        if not late:
            break
        best = max(late, key=lambda c: finish[c])
        copy_done = at + ordered[best] / speeds[device]
        if copy_done < finish[best]:
            finish[best] = copy_done
            heapq.heappush(free, (copy_done, device))  # busy with the copy until then
    return max(finish, default=0.0)


def model_round_robin(durations: Sequence[float], speeds: Sequence[float]) -> float:
    """Makespan when chunk ``i`` (in input order) goes to device ``i mod N`` (work units)."""
    n = len(speeds)
    loads = [sum(durations[i::n]) / speeds[i] for i in range(n)]
    return max(loads, default=0.0)


# -- the measured runs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunMeasure:
    """One measured run: makespan from the moment every worker was ready."""

    makespan_s: float
    startup_s: float  # pool creation to every worker ready (not in the makespan)
    chunks_per_device: tuple[int, ...]
    audio_s_per_device: tuple[float, ...]
    load_average: float | None = None  # the 1-minute load average just after, where known


class _Recorder:
    """Pool events, recorded in the dispatcher thread (it must not call back into the pool)."""

    def __init__(self, expected_workers: int) -> None:
        self.expected = expected_workers
        self.ready = 0
        self.all_ready = threading.Event()
        self.done_at: list[float] = []
        self.by_device: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        now = time.perf_counter()
        with self._lock:
            if kind == "worker_ready":
                self.ready += 1
                if self.ready >= self.expected:
                    self.all_ready.set()
            elif kind == "chunk_done":
                self.done_at.append(now)
                self.by_device.setdefault(str(data["device"]), []).append(float(data["audio_s"]))


def _device_slots(options: SimulationOptions, seconds_per_audio_s: float) -> list[DeviceSlots]:
    return [
        DeviceSlots(
            f"sim:{i}",
            1,
            EngineSpec("fake", fake=FakeBehaviour(seconds_per_audio_s=seconds_per_audio_s / speed)),
            batch_size=options.batch_size,
        )
        for i, speed in enumerate(options.speeds)
    ]


def _tasks(workload: Sequence[int]) -> list[ChunkTask]:
    # One silent buffer, sliced: the slices pickle as their own length, as real chunks would.
    buffer = np.zeros(max(workload, default=0), dtype=np.float32)
    options = DecodeOptions(language="en")
    return [ChunkTask(GROUP, i, buffer[:n], options) for i, n in enumerate(workload)]


def _wait_ready(recorder: _Recorder, timeout_s: float, what: str) -> None:
    if not recorder.all_ready.wait(timeout_s):
        raise WhisperSubsError(
            f"simulate: only {recorder.ready} of {recorder.expected} {what} workers were ready "
            f"after {timeout_s:.0f} s; the machine may be overloaded"
        )


def _check(futures: Sequence[Future[ChunkResult]]) -> None:
    wait_futures(futures)
    failed = [f for f in futures if f.cancelled() or f.exception() is not None]
    if failed:
        first = failed[0]
        raise WhisperSubsError(
            f"simulate: {len(failed)} of {len(futures)} chunks failed "
            f"({'cancelled' if first.cancelled() else first.exception()})"
        )


def _measure(
    recorder: _Recorder, started: float, ready_at: float, t0: float, device_ids: Sequence[str]
) -> RunMeasure:
    return RunMeasure(
        makespan_s=max(recorder.done_at) - t0,
        startup_s=ready_at - started,
        chunks_per_device=tuple(len(recorder.by_device.get(d, ())) for d in device_ids),
        audio_s_per_device=tuple(sum(recorder.by_device.get(d, ())) for d in device_ids),
        load_average=_load_average(),
    )


def _load_average() -> float | None:
    """Other work on the machine delays the dispatcher: report it beside the figures."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def measure_pull(
    workload: Sequence[int], options: SimulationOptions, seconds_per_audio_s: float
) -> RunMeasure:
    """One WorkerPool over every fake device; all chunks submitted once all workers are ready."""
    slots = _device_slots(options, seconds_per_audio_s)
    tasks = _tasks(workload)
    recorder = _Recorder(len(slots))
    started = time.perf_counter()
    extra: dict[str, object] = {}
    if options.backend == "ray":
        from .ray_pool import RayOptions

        extra["options"] = RayOptions(cpu_actor_cpus=0)  # the fakes sleep: no CPU to reserve
    pool_cm = make_pool(options.backend, slots, options.ray_address, on_event=recorder, **extra)
    with pool_cm as pool:
        _wait_ready(recorder, options.ready_timeout_s, "pool")
        ready_at = t0 = time.perf_counter()
        futures = [pool.submit(task) for task in tasks]
        _check(futures)
    return _measure(recorder, started, ready_at, t0, [s.device_id for s in slots])


def measure_round_robin(
    workload: Sequence[int], options: SimulationOptions, seconds_per_audio_s: float
) -> RunMeasure:
    """One single-slot WorkerPool per device; chunk ``i`` goes to pool ``i mod N``."""
    slots = _device_slots(options, seconds_per_audio_s)
    tasks = _tasks(workload)
    recorder = _Recorder(len(slots))
    started = time.perf_counter()
    pools = []
    try:
        for slot in slots:
            pools.append(WorkerPool([slot], on_event=recorder))
        _wait_ready(recorder, options.ready_timeout_s, "round-robin")
        ready_at = t0 = time.perf_counter()
        futures = [pools[i % len(pools)].submit(task) for i, task in enumerate(tasks)]
        _check(futures)
    finally:
        for pool in pools:
            pool.close()
    return _measure(recorder, started, ready_at, t0, [s.device_id for s in slots])


# -- the report -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimulationReport:
    options: SimulationOptions
    chunk_source: str
    chunk_s: tuple[float, ...]  # the simulated chunks' lengths, in submission order
    seconds_per_audio_s: float  # wall seconds per audio second on a full-speed device
    ideal_s: float
    pull: RunMeasure
    round_robin: RunMeasure | None
    model_pull_s: float  # the pure model's predictions, in wall seconds
    model_round_robin_s: float
    model_tail_duplication_s: float

    @property
    def audio_s(self) -> float:
        return sum(self.chunk_s)

    @property
    def efficiency(self) -> float:
        return self.ideal_s / self.pull.makespan_s

    @property
    def round_robin_efficiency(self) -> float | None:
        if self.round_robin is None:
            return None
        return self.ideal_s / self.round_robin.makespan_s

    @property
    def meets_target(self) -> bool:
        return self.efficiency >= self.options.target_efficiency

    def to_json(self) -> dict[str, Any]:
        rr = self.round_robin
        return {
            "efficiency": round(self.efficiency, 4),
            "round_robin_efficiency": _rounded(self.round_robin_efficiency),
            "makespan_s": round(self.pull.makespan_s, 4),
            "ideal_s": round(self.ideal_s, 4),
            "round_robin_makespan_s": None if rr is None else round(rr.makespan_s, 4),
            "target_efficiency": self.options.target_efficiency,
            "meets_target": self.meets_target,
            "devices": self.options.devices,
            "slow_device_factor": self.options.slow_device_factor,
            "speeds": list(self.options.speeds),
            "audio_s": round(self.audio_s, 3),
            "chunks": len(self.chunk_s),
            "longest_chunk_s": round(max(self.chunk_s), 3),
            "mean_chunk_s": round(self.audio_s / len(self.chunk_s), 3),
            "batch_size": self.options.batch_size,
            "seconds_per_audio_s": self.seconds_per_audio_s,
            "chunk_source": self.chunk_source,
            "startup_s": round(self.pull.startup_s, 3),
            "load_average": self.pull.load_average,
            "cpu_count": os.cpu_count(),
            "chunks_per_device": list(self.pull.chunks_per_device),
            "round_robin_chunks_per_device": None if rr is None else list(rr.chunks_per_device),
            "model_efficiency": round(self.ideal_s / self.model_pull_s, 4),
            "model_round_robin_efficiency": round(self.ideal_s / self.model_round_robin_s, 4),
            "model_tail_duplication_efficiency": round(
                self.ideal_s / self.model_tail_duplication_s, 4
            ),
        }

    def format(self) -> str:
        o = self.options
        slow = f", sim:0 {o.slow_device_factor:g}x slower" if o.slow_device_factor != 1 else ""
        chunks = self.chunk_s
        lines = [
            f"simulated {self.audio_s / 60:.1f} min of audio: {len(chunks)} chunks "
            f"({min(chunks):.1f}-{max(chunks):.1f} s, mean {self.audio_s / len(chunks):.1f} s), "
            f"lengths from {self.chunk_source}",
            f"{o.devices} fake device(s), 1 worker each{slow}; batch size {o.batch_size}; "
            f"1 audio s = {self.seconds_per_audio_s * 1000:.2f} ms of work at full speed; "
            f"workers ready in {self.pull.startup_s:.1f} s (not counted)",
            f"{'':13}{'makespan':>10}{'ideal':>9}{'efficiency':>12}{'model':>8}",
            _row("pull (ours)", self.pull.makespan_s, self.ideal_s, self.model_pull_s),
        ]
        if self.round_robin is not None:
            lines.append(
                _row(
                    "round-robin",
                    self.round_robin.makespan_s,
                    self.ideal_s,
                    self.model_round_robin_s,
                )
            )
        lines.append(
            f"chunks per device (pull): {', '.join(map(str, self.pull.chunks_per_device))}; "
            f"tail duplication would reach {self.ideal_s / self.model_tail_duplication_s:.3f} "
            f"in the model ({self.ideal_s / self.model_pull_s:.3f} without)"
        )
        verdict = "meets" if self.meets_target else "MISSES"
        lines.append(f"efficiency {self.efficiency:.3f} {verdict} the target {o.target_efficiency}")
        load, cores = self.pull.load_average, os.cpu_count() or 1
        if load is not None and load > cores:
            lines.append(
                f"note: load average {load:.1f} on {cores} cores during the run: other work "
                "delays the dispatcher and lowers these figures; rerun on a quiet machine"
            )
        return "\n".join(lines)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _row(name: str, makespan: float, ideal: float, model: float) -> str:
    return f"{name:13}{makespan:9.2f}s{ideal:8.2f}s{ideal / makespan:12.3f}{ideal / model:8.3f}"


def run_simulation(
    options: SimulationOptions,
    on_progress: Callable[[str], None] | None = None,
) -> SimulationReport:
    """Draw the workload, run pull (and round-robin) on real processes, and report."""
    say = on_progress or (lambda text: log.info("%s", text))
    if options.testdata is not None:
        say(f"chunk lengths: VAD and chunking of the speech in {options.testdata}")
        lengths = real_chunk_lengths(options.testdata, options.vad, options.chunking)
    else:
        lengths = synthetic_chunk_lengths(options.chunking, seed=options.seed)
    workload = draw_workload(lengths.samples, options.audio_minutes * 60, options.seed)
    seconds = [n / SAMPLE_RATE for n in workload]
    speeds = options.speeds
    ideal_work = ideal_makespan(seconds, speeds)
    scale = options.seconds_per_audio_s or options.target_ideal_s / ideal_work
    say(f"pull: {len(workload)} chunks over {options.devices} worker(s)")
    pull = measure_pull(workload, options, scale)
    round_robin = None
    if options.round_robin:
        say("round-robin: the same chunks, chunk i to device i mod N")
        round_robin = measure_round_robin(workload, options, scale)
    return SimulationReport(
        options=options,
        chunk_source=lengths.source,
        chunk_s=tuple(seconds),
        seconds_per_audio_s=scale,
        ideal_s=ideal_work * scale,
        pull=pull,
        round_robin=round_robin,
        model_pull_s=model_pull(seconds, speeds) * scale,
        model_round_robin_s=model_round_robin(seconds, speeds) * scale,
        model_tail_duplication_s=model_pull(seconds, speeds, duplicate_tail=True) * scale,
    )
