"""One input's path through the system, and the Transcriber that runs many over one pool.

``prepare`` (decode, VAD, plan) and ``finish`` (merge, guards, script, cues) are the two halves
around the pool; the CLI, the Python API and the service runner all use them. The Transcriber
overlaps them: while the pool transcribes one file's chunks, the next file is decoded and planned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .chunking import ChunkOptions, plan_chunks
from .cues import CueOptions, build_cues, cue_options_for, cues_from_segments
from .engine import DecodeOptions
from .errors import ChunkFailedError, MediaError, WhisperSubsError
from .formats import write_outputs
from .guards import GuardOptions, apply_guards
from .media import decode_audio
from .merge import majority_language, merge_chunks, snap_to_speech
from .pool import ChunkTask, WorkerPool
from .script import convert_segments, resolve_script
from .sentences import resegment
from .types import SAMPLE_RATE, Chunk, ChunkError, ChunkResult, Cue, Segment, SpeechSpan, Transcript
from .vad import VadOptions, detect_speech

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SubtitleOptions:
    """What happens after the pool: guards, script, cues."""

    cue_style: str = "words"  # "words": readable cues from word times; "segments": Whisper's
    cue_overrides: Mapping[str, float] = field(default_factory=dict)  # CueOptions fields
    chinese_script: str | None = None  # "simplified" | "traditional" | "auto" | None
    language_tag: str | None = None  # as the user gave it, e.g. "zh-TW" (for script "auto")
    keep_all: bool = False  # True: no hallucination guards


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    vad: VadOptions = field(default_factory=VadOptions)
    chunking: ChunkOptions = field(default_factory=ChunkOptions)
    subtitles: SubtitleOptions = field(default_factory=SubtitleOptions)


@dataclass(frozen=True, slots=True)
class Prepared:
    """An input decoded and planned, ready for the pool."""

    name: str
    audio: np.ndarray
    spans: tuple[SpeechSpan, ...]
    chunks: tuple[Chunk, ...]

    @property
    def duration_s(self) -> float:
        return self.audio.size / SAMPLE_RATE

    @property
    def speech_s(self) -> float:
        return sum(s.end - s.start for s in self.spans) / SAMPLE_RATE

    def tasks(self, group: str, options: DecodeOptions, priority: int = 0) -> list[ChunkTask]:
        return [
            ChunkTask(group, c.index, self.audio[c.start : c.end], options, priority)
            for c in self.chunks
        ]


def prepare(
    source: str | Path | np.ndarray, options: PipelineOptions, name: str | None = None
) -> Prepared:
    """Decode (a path) or take (an array) the audio, find speech, plan chunks."""
    if isinstance(source, np.ndarray):
        audio, name = source.astype(np.float32, copy=False), name or "audio"
    else:
        audio, name = decode_audio(source), name or str(source)
    spans = detect_speech(audio, options.vad)
    chunks = plan_chunks(spans, audio.size, options.chunking)
    return Prepared(name, audio, tuple(spans), tuple(chunks))


def finish(
    prepared: Prepared,
    results: Mapping[int, ChunkResult],
    errors: Sequence[ChunkError],
    options: PipelineOptions,
) -> Transcript:
    """Merge chunk results into one transcript with guards, script conversion and cues."""
    spans_s = [(s.start / SAMPLE_RATE, s.end / SAMPLE_RATE) for s in prepared.spans]
    segments = resegment(snap_to_speech(merge_chunks(prepared.chunks, results), spans_s))
    language = majority_language(prepared.chunks, results) or (options.decode.language or "")
    subs = options.subtitles
    removed = []
    if not subs.keep_all:
        segments, removed = apply_guards(segments, spans_s, GuardOptions())
    target = resolve_script(subs.chinese_script, subs.language_tag) if subs.chinese_script else None
    if target is not None and language.startswith("zh"):
        segments = convert_segments(segments, target, _region(subs.language_tag))
    cue_language = "en" if options.decode.task == "translate" else language
    cue_options = cue_options_for(cue_language, **subs.cue_overrides)
    cues = _cues(segments, cue_options, subs.cue_style)
    return Transcript(
        language=language,
        duration=prepared.duration_s,
        segments=tuple(segments),
        errors=tuple(sorted(errors, key=lambda e: e.start)),
        cues=tuple(cues),
        removed=tuple(removed),
        speech_s=prepared.speech_s,
    )


def _region(tag: str | None) -> str | None:
    parts = (tag or "").replace("_", "-").split("-")
    return parts[1].upper() if len(parts) > 1 and len(parts[1]) == 2 else None


def _cues(segments: Sequence[Segment], options: CueOptions, style: str) -> list[Cue]:
    if style == "segments":
        return cues_from_segments(segments, options)
    words = [w for s in segments for w in s.words]
    # A segment that starts after a pause starts a cue: cues never straddle VAD's pauses.
    breaks, n = [], 0
    for previous, segment in zip([None, *segments], segments, strict=False):
        if previous is not None and previous.words and segment.start - previous.end >= 0.4:
            breaks.append(n)
        n += len(segment.words)
    return build_cues(words, options, breaks)


def collect(
    prepared: Prepared, futures: Mapping[int, Future[ChunkResult]]
) -> tuple[dict[int, ChunkResult], list[ChunkError]]:
    """Wait for every chunk; failed ones become ChunkErrors (never dropped silently)."""
    wait_futures(list(futures.values()))
    results: dict[int, ChunkResult] = {}
    errors: list[ChunkError] = []
    chunks = {c.index: c for c in prepared.chunks}
    for index, future in futures.items():
        chunk = chunks[index]
        if future.cancelled():
            errors.append(ChunkError(index, chunk.start_s, chunk.end_s, "cancelled", 0))
            continue
        exc = future.exception()
        if exc is None:
            results[index] = future.result()
        else:
            attempts = exc.attempts if isinstance(exc, ChunkFailedError) else 1
            errors.append(ChunkError(index, chunk.start_s, chunk.end_s, str(exc), attempts))
    return results, errors


# -- many inputs over one pool ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """One input of a run: a transcript, or the error that stopped it before the pool."""

    source: str
    transcript: Transcript | None = None
    error: str | None = None
    outputs: Mapping[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


ProgressCallback = Callable[[str, dict[str, object]], None]


class Transcriber:
    """Transcribes inputs over a WorkerPool it is given (the pool outlives it)."""

    def __init__(
        self,
        pool: WorkerPool,
        options: PipelineOptions,
        on_progress: ProgressCallback | None = None,
        prefetch: int = 2,
    ) -> None:
        self.pool = pool
        self.options = options
        self._on_progress = on_progress or (lambda kind, data: None)
        self._prefetch = prefetch

    def transcribe(self, source: str | Path | np.ndarray) -> Transcript:
        """One input; raises MediaError for bad input."""
        prepared = prepare(source, self.options)
        futures = self._submit(prepared, "api")
        results, errors = collect(prepared, futures)
        return finish(prepared, results, errors, self.options)

    def _submit(self, prepared: Prepared, group: str) -> dict[int, Future[ChunkResult]]:
        futures = {}
        for task in prepared.tasks(group, self.options.decode):
            future = self.pool.submit(task)
            duration = task.duration_s
            future.add_done_callback(
                lambda f, d=duration: self._on_progress("chunk_done", {"audio_s": d})
            )
            futures[task.index] = future
        return futures

    def run(
        self,
        sources: Iterable[str | Path],
        write: Callable[[str, Transcript], Mapping[str, Path]] | None = None,
    ) -> Iterator[Outcome]:
        """Transcribe ``sources`` in order, preparing the next while the pool works."""
        queue: list[tuple[str, Prepared | None, dict[int, Future[ChunkResult]], str | None]] = []
        ready = threading.Semaphore(self._prefetch)
        lock = threading.Condition()
        done_preparing = threading.Event()
        started: dict[str, float] = {}

        def producer() -> None:
            try:
                for n, source in enumerate(sources):
                    ready.acquire()
                    key = str(source)
                    started[key] = time.perf_counter()
                    try:
                        prepared = prepare(source, self.options)
                    except MediaError as exc:
                        item = (key, None, {}, str(exc))
                    else:
                        futures = self._submit(prepared, f"input{n}")
                        self._on_progress(
                            "file_planned",
                            {
                                "source": key,
                                "chunks": len(prepared.chunks),
                                "duration_s": prepared.duration_s,
                            },
                        )
                        item = (key, prepared, futures, None)
                    with lock:
                        queue.append(item)
                        lock.notify()
            except Exception as exc:  # surfaced in the consumer below
                with lock:
                    queue.append(("", None, {}, f"internal error while preparing: {exc!r}"))
                    lock.notify()
            finally:
                done_preparing.set()
                with lock:
                    lock.notify()

        thread = threading.Thread(target=producer, name="whisper-subs-prepare", daemon=True)
        thread.start()
        while True:
            with lock:
                while not queue and not done_preparing.is_set():
                    lock.wait(0.5)
                if not queue:
                    break
                key, prepared, futures, error = queue.pop(0)
            try:
                if prepared is None:
                    yield Outcome(
                        key, error=error, seconds=time.perf_counter() - started.get(key, 0)
                    )
                    continue
                results, errors = collect(prepared, futures)
                transcript = finish(prepared, results, errors, self.options)
                outputs = write(key, transcript) if write is not None else {}
                yield Outcome(
                    key, transcript, outputs=outputs, seconds=time.perf_counter() - started[key]
                )
            except WhisperSubsError as exc:
                yield Outcome(key, error=str(exc))
            finally:
                ready.release()
        thread.join()


def output_writer(
    formats: Sequence[str], output_dir: Path | None
) -> Callable[[str, Transcript], Mapping[str, Path]]:
    """Write ``<stem>.<ext>`` next to the input, or into ``output_dir``."""

    def write(source: str, transcript: Transcript) -> Mapping[str, Path]:
        path = Path(source)
        return write_outputs(transcript, formats, output_dir or path.parent, path.stem)

    return write


def transcribe(
    source: str | Path | np.ndarray,
    *,
    model: str = "base",
    language: str | None = None,
    task: str = "transcribe",
    device: str = "auto",
    workers: int | None = None,
    options: PipelineOptions | None = None,
    pool: WorkerPool | None = None,
) -> Transcript:
    """Transcribe one file (or 16 kHz mono float32 array) to a Transcript with cues.

    Starts a pool for this call unless ``pool`` is given; programs that transcribe many inputs
    should keep one ``WorkerPool`` (models load once per worker) and use a ``Transcriber``.
    """
    from dataclasses import replace

    from .models import resolve_model
    from .workers import WorkerOptions, plan_workers

    options = options or PipelineOptions()
    if language is not None or task != "transcribe":
        options = replace(options, decode=replace(options.decode, language=language, task=task))
    if pool is not None:
        return Transcriber(pool, options).transcribe(source)
    _, slots = plan_workers(resolve_model(model), WorkerOptions(device=device, workers=workers))
    with WorkerPool(slots) as own_pool:
        return Transcriber(own_pool, options).transcribe(source)
