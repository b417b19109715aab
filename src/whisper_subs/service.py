"""The service layer: durable jobs over one shared worker pool, for the HTTP API and the web UI.

A ``Service`` owns, for its whole life, the job store (SQLite under ``data_dir``), one
``WorkerPool`` (so a warm server loads no model per job) and a few threads:

* the claimer takes queued jobs from the store while fewer than ``max_running_jobs`` run, and
  starts a thread per job. Several jobs run at once, so their chunks meet in the pool's
  scheduler, which serves the least-served job first (group = job id, priority = job priority):
  a short job submitted behind a long one finishes long before it. Preparing job N+1 (decode,
  VAD, plan) overlaps transcribing job N; ``max_preparing`` bounds how many decode at once.
* the keeper extends the leases of the jobs this process runs, requeues jobs left running by a
  dead process (same host: at once, by its pid; elsewhere: when the lease runs out) and deletes
  the inputs of jobs finished more than ``retention_s`` ago (outputs are kept).

A job thread re-plans its input (same audio, same chunks), loads the chunk results the store
already holds, submits only the missing chunks and saves each result as it arrives, so a job
resumed after a crash redoes no finished chunk. Outputs are written atomically under
``data_dir/outputs/<job id>/``.

The OpenAI-compatible endpoints use ``transcribe_file``: synchronous, not stored, but through the
same pool. Progress reaches the API and the UI as ``JobEvent``s (``events``, ``wait``) and, for
metrics, as ``(kind, data)`` calls to listeners (``add_listener``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from . import serialize
from .backends import Pool, make_pool, plan_pool
from .cues import CUE_FLAGS, cue_options_for
from .download import check_url, fetch_audio
from .engine import TASKS, DecodeOptions, FakeBehaviour
from .errors import (
    ChunkFailedError,
    InvalidTransitionError,
    JobNotFinishedError,
    MediaError,
    OutputNotFoundError,
    PayloadTooLargeError,
    UsageError,
    WhisperSubsError,
)
from .formats import WRITERS, parse_formats, write_outputs
from .jobs import Job, JobStatus, JobStore
from .languages import normalize_language
from .models import ResolvedModel, resolve_model
from .pipeline import PipelineOptions, Prepared, SubtitleOptions, finish, prepare
from .pool import PoolStatus
from .types import ChunkError, ChunkResult, Transcript
from .workers import WorkerOptions

log = logging.getLogger(__name__)

DEFAULT_FORMATS = ("srt", "vtt", "json", "txt")
OPENAI_MODEL_ALIASES = frozenset({"whisper-1"})  # accepted as "the server's model"
CUE_STYLES = ("words", "segments")
CHINESE_SCRIPTS = ("simplified", "traditional", "auto")
_DEFAULT_TEMPERATURES = DecodeOptions().temperatures
_SAFE_NAME = re.compile(r"[^\w.\- ]+")
_COPY_BLOCK = 1 << 20

Listener = Callable[[str, dict[str, Any]], None]


# -- settings and options ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """How the server runs; read once at the edge (CLI, app factory), then passed down."""

    data_dir: Path  # jobs.sqlite3, inputs/, downloads/ and outputs/ live here
    model: str = "base"  # models.resolve_model name or folder; one model per server
    workers: WorkerOptions = field(default_factory=WorkerOptions)
    api_key: str | None = None  # set: every /v1 request needs "Authorization: Bearer <key>"
    max_upload_mb: float = 1024.0  # larger uploads and downloads are refused (HTTP 413)
    retention_s: float | None = 7 * 24 * 3600.0  # finished jobs' inputs kept; None: forever
    lease_s: float = 60.0  # a running job's lease; a dead process's jobs are swept after it
    max_running_jobs: int | None = None  # jobs in the pool at once; None: 2 per slot, at least 4
    max_preparing: int = 1  # inputs decoded and planned at once (CPU bound, beside the workers)
    maintenance_interval_s: float = 30.0  # sweep and retention period
    sync_timeout_s: float = 3600.0  # longest OpenAI-style request
    fake_engine: FakeBehaviour | None = None  # tests only: the FakeEngine instead of Whisper
    backend: str = "local"  # "local" processes or "ray" actors (backends.make_pool)
    ray_address: str | None = None  # with backend "ray": auto, ray://host:port, or None

    def __post_init__(self) -> None:
        if not self.lease_s > 0:
            raise UsageError(f"lease must be > 0 seconds, got {self.lease_s!r}")
        if not self.max_upload_mb > 0:
            raise UsageError(f"max upload size must be > 0 MB, got {self.max_upload_mb!r}")
        if self.retention_s is not None and self.retention_s < 0:
            raise UsageError(f"retention must be >= 0 seconds, got {self.retention_s!r}")
        if self.max_running_jobs is not None and self.max_running_jobs < 1:
            raise UsageError(f"max running jobs must be >= 1, got {self.max_running_jobs!r}")
        if self.max_preparing < 1:
            raise UsageError(f"max preparing must be >= 1, got {self.max_preparing!r}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def inputs_dir(self) -> Path:
        return self.data_dir / "inputs"

    @property
    def downloads_dir(self) -> Path:
        return self.data_dir / "downloads"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"


@dataclass(frozen=True, slots=True)
class JobOptions:
    """What one job asks for. Stored with the job as JSON (``to_dict`` / ``from_mapping``)."""

    language: str | None = None  # a Whisper code or tag ("en", "zh-TW"); None: detected
    task: str = "transcribe"  # or "translate" (to English)
    formats: tuple[str, ...] = DEFAULT_FORMATS  # outputs written when the job is done
    priority: int = 0  # higher first, for the job and for its chunks in the pool
    model: str | None = None  # must name the server's model (or "whisper-1"); None: it
    initial_prompt: str | None = None  # text to prime every chunk with
    temperature: float | None = None  # first decoding temperature; None or 0: the fallback ladder
    beam_size: int = 5
    cue_style: str = "words"  # "words": readable cues from word times; "segments": Whisper's
    max_line_chars: float | None = None  # cue options; None: the language's default
    max_lines: int | None = None
    max_cps: float | None = None
    min_cue_s: float | None = None
    max_cue_s: float | None = None
    min_gap_s: float | None = None
    chinese_script: str | None = None  # "simplified" | "traditional" | "auto"
    keep_all: bool = False  # True: no hallucination guards

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise UsageError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        parse_formats(",".join(self.formats))  # UsageError for an unknown or empty list
        normalize_language(self.language)  # UsageError for an unknown language
        if self.cue_style not in CUE_STYLES:
            raise UsageError(
                f"cue_style must be one of {', '.join(CUE_STYLES)}, got {self.cue_style!r}"
            )
        if self.chinese_script is not None and self.chinese_script not in CHINESE_SCRIPTS:
            raise UsageError(
                f"chinese_script must be one of {', '.join(CHINESE_SCRIPTS)}, "
                f"got {self.chinese_script!r}"
            )
        if self.temperature is not None and not 0.0 <= self.temperature <= 1.0:
            raise UsageError(f"temperature must be between 0 and 1, got {self.temperature!r}")
        if self.beam_size < 1:
            raise UsageError(f"beam_size must be at least 1, got {self.beam_size!r}")
        cue_options_for(self.language, **self.cue_overrides)  # UsageError for bad values

    @property
    def cue_overrides(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in CUE_FLAGS if getattr(self, k) is not None}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["formats"] = list(self.formats)
        return data

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> JobOptions:
        """Options from stored JSON, a JSON request body or form fields (strings are parsed).

        Unknown names, and values of the wrong type, raise UsageError naming the field.
        """
        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(kinds))
        if unknown:
            raise UsageError(
                f"unknown job option(s) {', '.join(unknown)}; known: {', '.join(sorted(kinds))}"
            )
        values = {}
        for name, value in data.items():
            if value is None or value == "":
                continue  # absent: the default
            values[name] = _parse_field(name, str(kinds[name]), value)
        return cls(**values)

    def pipeline_options(self) -> PipelineOptions:
        language, tag = normalize_language(self.language)
        if self.temperature:
            ladder = tuple(t for t in _DEFAULT_TEMPERATURES if t > self.temperature)
            temperatures = (self.temperature, *ladder)
        else:
            temperatures = _DEFAULT_TEMPERATURES
        return PipelineOptions(
            decode=DecodeOptions(
                language=language, task=self.task, beam_size=self.beam_size,
                initial_prompt=self.initial_prompt or None, temperatures=temperatures,
            ),
            subtitles=SubtitleOptions(
                cue_style=self.cue_style, cue_overrides=self.cue_overrides,
                chinese_script=self.chinese_script, language_tag=tag, keep_all=self.keep_all,
            ),
        )  # fmt: skip


def _parse_field(name: str, kind: str, value: Any) -> Any:
    """One option value from JSON or a form string, by the field's annotation."""
    try:
        if kind.startswith("tuple"):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip().lower() for i in items if str(i).strip())
        if kind.startswith("bool"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(value, bool):
            raise ValueError(value)  # true/false is not a number or a name
        if kind.startswith("int"):
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        if kind.startswith("float"):
            return float(value)
        if not isinstance(value, str):
            raise ValueError(value)
        return value.strip()
    except (TypeError, ValueError, AttributeError):
        expected = kind.split(" |")[0].replace("tuple[str, ...]", "a comma-separated list")
        raise UsageError(f"job option {name}: expected {expected}, got {value!r}") from None


# -- events and status ---------------------------------------------------------------------------


EVENT_KINDS = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "progress",
    JobStatus.DONE: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A job's state at one moment: ``kind`` is queued, progress, finished, failed or cancelled."""

    kind: str
    job: Job

    @classmethod
    def of(cls, job: Job) -> JobEvent:
        return cls(EVENT_KINDS[job.status], job)


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    ready: bool  # at least one worker has its model loaded
    model: str
    pool: PoolStatus | None  # None before start
    plan: dict[str, Any] | None  # the capacity plan (local) or the cluster plan (ray), as data
    jobs: Mapping[JobStatus, int]
    running: tuple[str, ...]  # ids of the jobs this process runs now

    def to_json(self) -> dict[str, Any]:
        pool = self.pool.to_json() if self.pool is not None else {}
        return {
            "ready": self.ready,
            "model": self.model,
            "devices": pool.get("devices", []),
            "slots": pool.get("max_concurrent", 0),
            "active": pool.get("active", 0),
            "queued": pool.get("queued", 0),
            "model_loads": pool.get("model_loads", 0),
            "worker_deaths": pool.get("worker_deaths", 0),
            "retries": pool.get("retries", 0),
            "plan": self.plan,
            "jobs": {status.value: n for status, n in self.jobs.items()},
            "running": list(self.running),
        }


class _Hub:
    """Fan-out of job snapshots to subscribers (SSE streams, ``wait``), per job id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, list[queue.Queue[Job]]] = {}

    def subscribe(self, job_id: str) -> queue.Queue[Job]:
        q: queue.Queue[Job] = queue.Queue(maxsize=256)
        with self._lock:
            self._subscribers.setdefault(job_id, []).append(q)
        return q

    def unsubscribe(self, job_id: str, q: queue.Queue[Job]) -> None:
        with self._lock:
            subscribers = self._subscribers.get(job_id, [])
            if q in subscribers:
                subscribers.remove(q)
            if not subscribers:
                self._subscribers.pop(job_id, None)

    def publish(self, job: Job) -> None:
        with self._lock:
            subscribers = list(self._subscribers.get(job.id, ()))
        for q in subscribers:
            try:
                q.put_nowait(job)
            except queue.Full:  # a slow reader: drop its oldest snapshot, keep the newest
                try:
                    q.get_nowait()
                    q.put_nowait(job)
                except (queue.Empty, queue.Full):
                    pass


@dataclass(slots=True)
class _Running:
    """A job this process is running: what cancel and the keeper need to reach it."""

    job_id: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: str | None = None  # "cancelled" or "lease lost": the thread drops the job


# -- the service ---------------------------------------------------------------------------------


class Service:
    """Jobs, the pool and the runner threads of one server process. See the module doc."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._store: JobStore | None = None
        self._pool: Pool | None = None
        self._plan: dict[str, Any] | None = None
        self._hub = _Hub()
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._threads: list[threading.Thread] = []
        self._job_threads: dict[str, threading.Thread] = {}
        self._wakeup = threading.Event()
        self._closing = threading.Event()
        self._prepare_gate = threading.Semaphore(settings.max_preparing)
        self._max_running = settings.max_running_jobs or 4

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the store, requeue what a dead process left, start the pool and the threads.

        Returns before the models are loaded; ``ready`` turns true when a worker is.
        """
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        s = self.settings
        for folder in (s.data_dir, s.inputs_dir, s.downloads_dir, s.outputs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._store = JobStore(s.db_path)
        self._requeue_abandoned()
        if s.fake_engine is not None:
            model = ResolvedModel(name=s.model, location="fake", local=True)
        else:
            model = resolve_model(s.model)
        placed = plan_pool(s.backend, model, s.workers, s.ray_address, fake=s.fake_engine)
        self._plan, slots = placed.plan_json, list(placed.slots)
        log.info("workers:\n%s", placed.text)
        self._pool = make_pool(
            s.backend, slots, s.ray_address, on_event=self._emit, **placed.pool_kwargs
        )
        total_slots = sum(d.slots for d in slots)
        self._max_running = s.max_running_jobs or max(4, 2 * total_slots)
        for target, name in ((self._claim_loop, "claimer"), (self._keeper_loop, "keeper")):
            thread = threading.Thread(target=target, name=f"whisper-subs-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("service started as %s: data in %s, model %s", self.owner, s.data_dir, s.model)

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking jobs, stop the pool, and requeue this process's running jobs for the next
        start (their saved chunks are kept)."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._wakeup.set()
        for thread in self._threads:
            thread.join(timeout)
        if self._pool is not None:
            self._pool.close()
        with self._lock:
            job_threads = list(self._job_threads.values())
        deadline = time.monotonic() + timeout
        for thread in job_threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._store is not None:
            self._store.requeue_running_of(self.owner)
            self._store.close()
        log.info("service stopped")

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def ready(self) -> bool:
        return self._pool is not None and self._pool.ready and not self._closing.is_set()

    def health(self) -> str:
        """The server's health in a word: ok once a worker has its model loaded; else
        starting, stopping, or "broken: <why>" when no worker can load the model."""
        if self._closing.is_set():
            return "stopping"
        if self._pool is None:
            return "starting"
        try:
            return "ok" if self._pool.wait_ready(0) else "starting"
        except WhisperSubsError as exc:
            return f"broken: {exc}"

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until a worker has its model loaded; WhisperSubsError if none ever can."""
        return self._pool_or_raise().wait_ready(timeout)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(kind, data)`` for pool events (worker_ready, chunk_done, ...) and job
        ends (job_finished, job_failed). Add listeners before ``start``."""
        self._listeners.append(listener)

    # -- submitting -----------------------------------------------------------------------------

    def save_upload(self, stream: BinaryIO, name: str | None) -> Path:
        """Copy an upload into ``inputs/<token>/``; PayloadTooLargeError past the size limit,
        MediaError for an empty file."""
        folder = self.settings.inputs_dir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        path = folder / safe_name(name)
        limit = self.settings.max_upload_bytes
        size = 0
        try:
            with path.open("wb") as out:
                while block := stream.read(_COPY_BLOCK):
                    size += len(block)
                    if size > limit:
                        raise PayloadTooLargeError(
                            f"upload {name!r} is larger than the {self.settings.max_upload_mb:g} "
                            "MB this server accepts; split it or ask for a larger "
                            "--max-upload-mb"
                        )
                    out.write(block)
            if size == 0:
                raise MediaError(f"upload {name!r} is empty: send the media file's bytes")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return path

    def submit_upload(
        self, stream: BinaryIO, name: str | None, options: JobOptions | None = None
    ) -> Job:
        """Queue a job for an uploaded file (see ``save_upload``)."""
        options = self._check_options(options or JobOptions())
        path = self.save_upload(stream, name)
        return self._create(str(path), safe_name(name), options)

    def submit_file(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        options: JobOptions | None = None,
        *,
        move: bool = False,
    ) -> Job:
        """Queue a job for a local file, copied (or moved) into the data dir first, so the job
        does not depend on a temporary file that someone else deletes."""
        options = self._check_options(options or JobOptions())
        source = Path(path)
        if not source.is_file():
            raise MediaError(f"{source}: no such file")
        if source.stat().st_size == 0:
            raise MediaError(f"{source}: file is empty")
        display = safe_name(name or source.name)
        if source.resolve().parent.parent == self.settings.inputs_dir.resolve():
            return self._create(str(source), display, options)  # already ours (save_upload)
        folder = self.settings.inputs_dir / uuid.uuid4().hex
        folder.mkdir(parents=True)
        target = folder / display
        try:
            if move:
                shutil.move(source, target)
            else:
                shutil.copyfile(source, target)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise MediaError(f"{source}: cannot copy it into the data dir: {exc}") from exc
        return self._create(str(target), display, options)

    def submit_url(self, url: str, options: JobOptions | None = None) -> Job:
        """Queue a job whose input yt-dlp fetches when the job runs (failures fail the job)."""
        options = self._check_options(options or JobOptions())
        url = check_url(url)
        return self._create(url, url_name(url), options)

    def _create(self, input: str, name: str, options: JobOptions) -> Job:
        job = self._store_or_raise().create(input, name, options.to_dict(), options.priority)
        self._hub.publish(job)
        self._wakeup.set()
        return job

    def _check_options(self, options: JobOptions) -> JobOptions:
        """Options this server can run: its model, and no translation on an English-only one."""
        model = self.settings.model
        if options.model and options.model not in OPENAI_MODEL_ALIASES | {model}:
            raise UsageError(
                f"this server runs the model {model!r}, not {options.model!r}: leave model "
                f"empty or give {model!r}"
            )
        english_only = Path(model).name.endswith(".en")
        if english_only and options.task == "translate":
            raise UsageError(f"model {model!r} is English-only: it cannot translate")
        code, _ = normalize_language(options.language)
        if english_only and code not in (None, "en"):
            raise UsageError(
                f"model {model!r} is English-only: it cannot transcribe language {code!r}"
            )
        return options

    # -- reading and cancelling -----------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        return self._store_or_raise().get(job_id)

    def list(self, status: JobStatus | None = None, limit: int = 100) -> list[Job]:
        if not 1 <= limit <= 1000:
            raise UsageError(f"limit must be between 1 and 1000, got {limit}")
        return self._store_or_raise().list(status, limit)

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job; its queued chunks leave the pool at once.

        A finished job raises InvalidTransitionError.
        """
        job = self._store_or_raise().cancel(job_id)
        self._stop_running(job_id, "cancelled")
        self._hub.publish(job)
        return job

    def _stop_running(self, job_id: str, reason: str) -> None:
        with self._lock:
            running = self._running.get(job_id)
        if running is not None:
            with running.lock:  # after this, the job thread submits nothing more
                running.stopped = reason
        if self._pool is not None:
            dropped = self._pool.cancel_group(job_id)
            if dropped:
                log.info("job %s %s: %d queued chunk(s) dropped", job_id, reason, dropped)

    def subtitle_path(self, job_id: str, fmt: str) -> Path:
        """The output file of a done job in ``fmt`` (srt, vtt, json, txt, tsv)."""
        fmt = fmt.lower()
        if fmt not in WRITERS:
            raise OutputNotFoundError(
                f"unknown subtitle format {fmt!r}: choose from {', '.join(WRITERS)}"
            )
        job = self.get(job_id)
        if job.status is not JobStatus.DONE:
            hint = f": {job.error}" if job.error else ""
            raise JobNotFinishedError(
                f"job {job_id} is {job.status.value}{hint}; subtitles exist once it is done"
            )
        if fmt not in job.outputs:
            raise OutputNotFoundError(
                f"job {job_id} has no {fmt} output: it was asked for "
                f"{', '.join(sorted(job.outputs))}"
            )
        path = Path(job.outputs[fmt])
        if not path.is_file():
            raise OutputNotFoundError(f"job {job_id}: its {fmt} output is missing on disk")
        return path

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is done, failed or cancelled (or ``timeout`` passes); the job."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for event in self.events(job_id, idle_s=1.0):
            if event.job.status.is_terminal:
                return event.job
            if deadline is not None and time.monotonic() >= deadline:
                return event.job
        return self.get(job_id)

    def events(self, job_id: str, *, idle_s: float = 15.0) -> Iterator[JobEvent]:
        """The job's state now, then each change, until it is done, failed or cancelled.

        When nothing happens for ``idle_s``, the state is read again and sent anyway (it also
        catches changes made by another process). An unknown id raises JobNotFoundError here,
        before iteration starts.
        """
        store = self._store_or_raise()
        q = self._hub.subscribe(job_id)
        try:
            job = store.get(job_id)
        except BaseException:
            self._hub.unsubscribe(job_id, q)
            raise
        return self._event_stream(job_id, job, q, idle_s)

    def _event_stream(
        self, job_id: str, job: Job, q: queue.Queue[Job], idle_s: float
    ) -> Iterator[JobEvent]:
        try:
            yield JobEvent.of(job)
            while not job.status.is_terminal:
                try:
                    job = q.get(timeout=idle_s)
                except queue.Empty:
                    job = self.get(job_id)
                yield JobEvent.of(job)
        finally:
            self._hub.unsubscribe(job_id, q)

    def status(self) -> ServiceStatus:
        store = self._store_or_raise()
        with self._lock:
            running = tuple(self._running)
        return ServiceStatus(
            ready=self.ready,
            model=self.settings.model,
            pool=self._pool.status() if self._pool is not None else None,
            plan=self._plan,
            jobs=store.counts(),
            running=running,
        )

    # -- synchronous transcription (OpenAI-compatible endpoints) --------------------------------

    def transcribe_upload(
        self, stream: BinaryIO, name: str | None, options: JobOptions | None = None
    ) -> Transcript:
        """Transcribe an upload now, through the shared pool; nothing is stored."""
        options = self._check_options(options or JobOptions())
        path = self.save_upload(stream, name)
        try:
            return self.transcribe_file(path, options)
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)

    def transcribe_file(
        self, path: str | os.PathLike[str], options: JobOptions | None = None
    ) -> Transcript:
        """Transcribe a local file now, through the shared pool (chunks are a group of their
        own, so they share the workers fairly with the jobs); MediaError for bad input."""
        options = self._check_options(options or JobOptions())
        pool = self._pool_or_raise()
        pipeline_options = options.pipeline_options()
        with self._prepare_gate:
            prepared = prepare(Path(path), pipeline_options, name=Path(path).name)
        group = f"sync-{uuid.uuid4().hex}"
        tasks = prepared.tasks(group, pipeline_options.decode, options.priority)
        futures = {pool.submit(task): task.index for task in tasks}
        results: dict[int, ChunkResult] = {}
        errors = []
        try:
            for future in _as_completed(futures, timeout=self.settings.sync_timeout_s):
                index = futures[future]
                outcome = _outcome(future)
                if isinstance(outcome, ChunkResult):
                    results[index] = outcome
                else:
                    errors.append(_chunk_error(prepared, index, outcome))
        except TimeoutError:
            pool.cancel_group(group)
            raise WhisperSubsError(
                f"transcription took longer than {self.settings.sync_timeout_s:g} s: use "
                "/v1/jobs for long inputs"
            ) from None
        if errors:
            raise ChunkFailedError(_errors_message(errors, len(tasks)))
        return finish(prepared, results, [], pipeline_options)

    # -- runner ---------------------------------------------------------------------------------

    def _claim_loop(self) -> None:
        store = self._store_or_raise()
        while not self._closing.is_set():
            self._wakeup.clear()
            while not self._closing.is_set():
                with self._lock:
                    if len(self._running) >= self._max_running:
                        break
                try:
                    job = store.claim(self.owner, self.settings.lease_s)
                except WhisperSubsError:
                    log.exception("claiming a job failed; trying again shortly")
                    break
                if job is None:
                    break
                self._start_job(job)
            self._wakeup.wait(1.0)  # other processes may queue jobs too: poll now and then

    def _start_job(self, job: Job) -> None:
        thread = threading.Thread(
            target=self._run_job, args=(job,), name=f"whisper-subs-job-{job.id[:8]}", daemon=True
        )
        with self._lock:
            self._running[job.id] = _Running(job.id)
            self._job_threads[job.id] = thread
        self._hub.publish(job)
        thread.start()

    def _run_job(self, job: Job) -> None:
        store = self._store_or_raise()
        started = time.monotonic()
        try:
            self._transcribe_job(job)
        except WhisperSubsError as exc:
            self._fail(job.id, str(exc))
        except Exception as exc:  # a bug: fail this job with it, keep serving the others
            log.exception("job %s: internal error", job.id)
            self._fail(job.id, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._running.pop(job.id, None)
                self._job_threads.pop(job.id, None)
            self._wakeup.set()
        try:
            final = store.get(job.id)
        except WhisperSubsError:
            return
        if final.status.is_terminal:
            self._emit(
                "job_" + EVENT_KINDS[final.status],
                {"job": final, "wall_s": time.monotonic() - started},
            )

    def _stopped(self, job_id: str) -> str | None:
        if self._closing.is_set():
            return "server stopping"
        with self._lock:
            running = self._running.get(job_id)
        return running.stopped if running is not None else None

    def _transcribe_job(self, job: Job) -> None:
        store = self._store_or_raise()
        pool = self._pool_or_raise()
        options = JobOptions.from_mapping(job.options)
        pipeline_options = options.pipeline_options()
        source = self._job_input(job)
        with self._prepare_gate:
            if self._stopped(job.id):
                return
            prepared = prepare(source, pipeline_options, name=job.input_name)
        job = store.set_plan(job.id, prepared.duration_s, len(prepared.chunks))
        self._hub.publish(job)
        saved = self._saved_results(job.id, prepared)
        tasks = [
            task
            for task in prepared.tasks(job.id, pipeline_options.decode, job.priority)
            if task.index not in saved
        ]
        log.info(
            "job %s: %d chunk(s) over %.1f s of audio; %d already saved, submitting %d",
            job.id, len(prepared.chunks), prepared.duration_s, len(saved), len(tasks),
        )  # fmt: skip
        with self._lock:
            running = self._running[job.id]
        with running.lock:
            if self._stopped(job.id):
                return
            futures = {pool.submit(task): task.index for task in tasks}
        results = dict(saved)
        errors: list[ChunkError] = []
        for future in _as_completed(futures):
            index = futures[future]
            outcome = _outcome(future)
            if not isinstance(outcome, ChunkResult):
                if not future.cancelled():
                    errors.append(_chunk_error(prepared, index, outcome))
                continue
            results[index] = outcome
            chunk = prepared.chunks[index]
            if store.save_chunk(job.id, index, serialize.dumps_chunk(chunk, outcome)):
                log.info("job %s: chunk %d saved (%.1f s)", job.id, index, chunk.duration_s)
                self._hub.publish(store.get(job.id))
        if reason := self._stopped(job.id):
            log.info("job %s: dropped (%s)", job.id, reason)
            return
        if len(results) + len(errors) < len(prepared.chunks):
            raise WhisperSubsError(f"job {job.id}: chunks were cancelled by the pool")
        if errors:
            raise ChunkFailedError(_errors_message(errors, len(prepared.chunks)))
        transcript = finish(prepared, results, [], pipeline_options)
        folder = self.settings.outputs_dir / job.id
        written = write_outputs(transcript, options.formats, folder, output_stem(job.input_name))
        try:
            done = store.finish(job.id, {k: str(p) for k, p in written.items()}, owner=self.owner)
        except InvalidTransitionError as exc:  # cancelled or swept meanwhile
            log.info("job %s: not finished: %s", job.id, exc)
            return
        self._hub.publish(done)

    def _job_input(self, job: Job) -> Path:
        if job.input.startswith(("http://", "https://")):
            folder = self.settings.downloads_dir / job.id
            return fetch_audio(job.input, folder, self.settings.max_upload_bytes).path
        return Path(job.input)

    def _saved_results(self, job_id: str, prepared: Prepared) -> dict[int, ChunkResult]:
        """Chunk results saved by an earlier attempt that match this plan's chunks exactly."""
        saved: dict[int, ChunkResult] = {}
        for index, payload in self._store_or_raise().chunk_results(job_id).items():
            try:
                chunk, result = serialize.loads_chunk(payload)
            except ValueError as exc:
                log.warning("job %s: chunk %d unreadable (%s); redoing it", job_id, index, exc)
                continue
            if index < len(prepared.chunks) and prepared.chunks[index] == chunk:
                saved[index] = result
            else:
                log.warning("job %s: chunk %d is from another plan; redoing it", job_id, index)
        return saved

    def _fail(self, job_id: str, message: str) -> None:
        if self._stopped(job_id):
            log.info("job %s: not failed (%s): %s", job_id, self._stopped(job_id), message)
            return
        try:
            job = self._store_or_raise().fail(job_id, message, owner=self.owner)
        except InvalidTransitionError as exc:
            log.info("job %s: not failed: %s", job_id, exc)
            return
        self._hub.publish(job)

    # -- keeper: leases, dead processes, retention ----------------------------------------------

    def _keeper_loop(self) -> None:
        heartbeat_s = self.settings.lease_s / 3
        next_maintenance = 0.0
        while not self._closing.wait(min(heartbeat_s, 5.0)):
            try:
                self._heartbeat()
                if time.monotonic() >= next_maintenance:
                    self._requeue_abandoned()
                    self._apply_retention()
                    next_maintenance = time.monotonic() + self.settings.maintenance_interval_s
            except WhisperSubsError:
                log.exception("maintenance failed; trying again shortly")

    def _heartbeat(self) -> None:
        store = self._store_or_raise()
        with self._lock:
            job_ids = list(self._running)
        for job_id in job_ids:
            if not store.heartbeat(job_id, self.owner, self.settings.lease_s):
                job = store.get(job_id)
                reason = "cancelled" if job.status is JobStatus.CANCELLED else "lease lost"
                self._stop_running(job_id, reason)
                self._hub.publish(job)

    def _requeue_abandoned(self) -> None:
        """Requeue running jobs of dead processes: on this host at once (their pid is gone),
        elsewhere once their lease has run out."""
        store = self._store_or_raise()
        host = socket.gethostname()
        dead = set()
        for job in store.list(JobStatus.RUNNING, limit=1000):
            owner = job.lease_owner or ""
            if owner != self.owner and _owner_is_dead(owner, host):
                dead.add(owner)
        for owner in sorted(dead):
            for job_id in store.requeue_running_of(owner):
                log.warning("job %s requeued: its process %s is gone", job_id, owner)
        if store.sweep():
            self._wakeup.set()
        if dead:
            self._wakeup.set()

    def _apply_retention(self) -> None:
        retention = self.settings.retention_s
        if retention is None:
            return
        store = self._store_or_raise()
        for job in store.finished_before(time.time() - retention):
            folder = self._input_folder(job)
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            store.mark_input_deleted(job.id)
            log.info("job %s: input deleted after retention", job.id)

    def _input_folder(self, job: Job) -> Path | None:
        """The folder holding the job's input inside the data dir (never anything outside)."""
        if job.input.startswith(("http://", "https://")):
            return self.settings.downloads_dir / job.id
        folder = Path(job.input).parent
        if folder.parent.resolve() == self.settings.inputs_dir.resolve():
            return folder
        return None

    # -- plumbing -------------------------------------------------------------------------------

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        for listener in self._listeners:
            try:
                listener(kind, data)
            except Exception:  # a listener's bug must not stop a job or the pool
                log.exception("service listener failed on %s", kind)

    def _store_or_raise(self) -> JobStore:
        if self._store is None:
            raise WhisperSubsError("the service is not started")
        return self._store

    def _pool_or_raise(self) -> Pool:
        if self._pool is None:
            raise WhisperSubsError("the service is not started")
        return self._pool


# -- small pure helpers --------------------------------------------------------------------------


def safe_name(name: str | None) -> str:
    """A file name safe to create: the last path part, odd characters replaced, never hidden."""
    base = re.split(r"[\\/]", name or "")[-1]
    cleaned = _SAFE_NAME.sub("_", base).strip().lstrip(".")[:200]
    return cleaned or "upload"


def output_stem(name: str) -> str:
    stem = Path(safe_name(name)).stem
    return stem or "subtitles"


def url_name(url: str) -> str:
    tail = url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    return safe_name(tail or "download")


def _owner_is_dead(owner: str, host: str) -> bool:
    """True when ``owner`` ("host:pid:token") ran on this host in a process that is gone."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return True  # an earlier service in this process, or a container restarted as pid 1
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _as_completed(
    futures: Collection[Future[ChunkResult]], timeout: float | None = None
) -> Iterator[Future[ChunkResult]]:
    """Futures as they complete, cancelled ones included (TimeoutError past ``timeout``).

    Not ``concurrent.futures.as_completed``: it never sees a future cancelled with
    ``Future.cancel()`` alone, which is how the pool drops a group's queued chunks.
    Done-callbacks do run on cancel, so they feed a queue here.
    """
    done: queue.SimpleQueue[Future[ChunkResult]] = queue.SimpleQueue()
    for future in futures:
        future.add_done_callback(done.put)
    deadline = None if timeout is None else time.monotonic() + timeout
    for _ in range(len(futures)):
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            yield done.get(timeout=remaining)
        except queue.Empty:
            raise TimeoutError from None


def _outcome(future: Future[ChunkResult]) -> ChunkResult | BaseException | None:
    """The result, the exception, or None for a cancelled chunk."""
    if future.cancelled():
        return None
    exc = future.exception()
    return exc if exc is not None else future.result()


def _chunk_error(prepared: Prepared, index: int, outcome: BaseException | None) -> ChunkError:
    chunk = prepared.chunks[index]
    message = "cancelled" if outcome is None else str(outcome)
    attempts = 2 if isinstance(outcome, ChunkFailedError) else 1
    return ChunkError(index, chunk.start_s, chunk.end_s, message, attempts)


def _errors_message(errors: list[ChunkError], total: int) -> str:
    first = sorted(errors, key=lambda e: e.chunk_index)[:3]
    details = "; ".join(
        f"chunk {e.chunk_index} ({e.start:.1f}-{e.end:.1f} s): {e.message}" for e in first
    )
    more = f"; and {len(errors) - len(first)} more" if len(errors) > len(first) else ""
    return f"{len(errors)} of {total} chunk(s) failed: {details}{more}"
