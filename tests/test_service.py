"""The service layer in-process: options, the runner, resume, cancel, retention, URL input.

Scheduling and failure tests use the FakeEngine (real pool, real processes, real audio for
decoding and VAD; the engine only sleeps): the real engine is exercised over HTTP in test_api.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import shared_file
from whisper_subs import serialize
from whisper_subs.engine import FakeBehaviour
from whisper_subs.errors import (
    InvalidTransitionError,
    JobNotFinishedError,
    JobNotFoundError,
    MediaError,
    ModelNotFoundError,
    OutputNotFoundError,
    PayloadTooLargeError,
    UsageError,
    WhisperSubsError,
)
from whisper_subs.jobs import JobStatus, JobStore
from whisper_subs.pipeline import prepare
from whisper_subs.service import JobOptions, Service, Settings, safe_name
from whisper_subs.types import Chunk, ChunkResult, Segment, Word
from whisper_subs.workers import WorkerOptions

pytestmark = pytest.mark.timeout(120)

CHAPTER = "derived/ljspeech_LJ001-0001-0032_chapter_concat.flac"  # 234 s, ~9 chunks
JFK = "openai-whisper/jfk.flac"  # 11 s, 1 chunk


class Recorder:
    """Collects the service's listener events (pool and job events)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))

    def chunks_of(self, job_id: str) -> list[int]:
        return [d["index"] for k, d in self.events if k == "chunk_done" and d["group"] == job_id]


ServiceFactory = Callable[..., tuple[Service, Recorder]]


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[ServiceFactory]:
    """Start services on ``tmp_path/data`` with the fake engine; all are closed at the end."""
    started: list[Service] = []

    def make(
        seconds_per_audio_s: float = 0.0, workers: int = 1, batch_size: int = 4, **overrides: Any
    ) -> tuple[Service, Recorder]:
        fake = overrides.pop("fake", None) or FakeBehaviour(seconds_per_audio_s=seconds_per_audio_s)
        settings = Settings(
            data_dir=tmp_path / "data",
            workers=WorkerOptions(device="cpu", workers=workers, threads=1, batch_size=batch_size),
            fake_engine=fake,
            **overrides,
        )
        service = Service(settings)
        recorder = Recorder()
        service.add_listener(recorder)
        started.append(service)
        service.start()
        assert service.wait_ready(60)
        return service, recorder

    yield make
    for service in reversed(started):
        service.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# -- options -------------------------------------------------------------------------------------


def test_job_options_parse_form_strings_and_json_values_alike() -> None:
    from_form = JobOptions.from_mapping(
        {"language": "en", "formats": "srt, VTT", "priority": "3", "keep_all": "true",
         "max_lines": "1", "max_cps": "17.5", "temperature": "0.4", "model": ""}
    )  # fmt: skip
    from_json = JobOptions.from_mapping(
        {"language": "en", "formats": ["srt", "vtt"], "priority": 3, "keep_all": True,
         "max_lines": 1, "max_cps": 17.5, "temperature": 0.4, "model": None}
    )  # fmt: skip
    assert from_form == from_json
    assert from_form.formats == ("srt", "vtt")
    assert JobOptions.from_mapping(from_form.to_dict()) == from_form  # stored JSON round trip
    options = from_form.pipeline_options()
    assert options.decode.language == "en"
    assert options.decode.temperatures == (0.4, 0.6, 0.8, 1.0)
    assert options.subtitles.cue_overrides == {"max_lines": 1, "max_cps": 17.5}
    assert JobOptions().pipeline_options().decode.temperatures[0] == 0.0  # default ladder


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"colour": "red"}, "unknown job option"),
        ({"task": "summarize"}, "task must be one of"),
        ({"formats": "srt,docx"}, "unknown format docx"),
        ({"language": "xx"}, "unknown language"),
        ({"priority": "high"}, "priority: expected int"),
        ({"priority": "1.5"}, "priority: expected int"),
        ({"keep_all": "maybe"}, "keep_all: expected bool"),
        ({"max_lines": "0"}, "max_lines"),
        ({"temperature": "2"}, "temperature must be between 0 and 1"),
        ({"cue_style": "karaoke"}, "cue_style must be one of"),
    ],
)
def test_bad_job_options_raise_usage_errors_naming_the_field(
    fields: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        JobOptions.from_mapping(fields)


def test_safe_name_keeps_uploads_inside_their_folder() -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\Users\\me\\talk 1.mp3") == "talk 1.mp3"
    assert safe_name(".hidden") == "hidden"
    assert safe_name("") == safe_name(None) == "upload"
    assert safe_name("a;b|c.wav") == "a_b_c.wav"


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(UsageError, match="lease"):
        Settings(data_dir=Path("x"), lease_s=0)
    with pytest.raises(UsageError, match="upload"):
        Settings(data_dir=Path("x"), max_upload_mb=-1)


# -- jobs through the service ------------------------------------------------------------------


def test_job_runs_through_the_shared_pool_and_writes_outputs_atomically(
    make_service: ServiceFactory,
) -> None:
    service, recorder = make_service(workers=2)
    jobs = [
        service.submit_file(shared_file(JFK), options=JobOptions(formats=("srt", "json")))
        for _ in range(3)
    ]
    for job in jobs:
        done = service.wait(job.id, timeout=60)
        assert done.status is JobStatus.DONE, done.error
        assert done.progress == 1.0 and done.chunks_done == done.chunks_total == 1
        folder = service.settings.outputs_dir / job.id
        assert sorted(p.name for p in folder.iterdir()) == ["jfk.json", "jfk.srt"]  # no temp files
        assert service.subtitle_path(job.id, "srt").read_text().startswith("1\n00:00:")
        with pytest.raises(OutputNotFoundError, match="no vtt output"):
            service.subtitle_path(job.id, "vtt")
    status = service.status()
    assert status.pool is not None and status.pool.model_loads == 2  # one per worker, not per job
    assert status.jobs[JobStatus.DONE] == 3
    assert sorted(k for k, _ in recorder.events if k.startswith("job_")) == ["job_finished"] * 3


def test_events_go_from_queued_to_finished_with_rising_progress(
    make_service: ServiceFactory,
) -> None:
    service, _ = make_service(seconds_per_audio_s=0.002, workers=2)
    job = service.submit_file(shared_file(CHAPTER))
    events = list(service.events(job.id, idle_s=5))
    assert events[0].kind in ("queued", "progress")
    assert events[-1].kind == "finished"
    progress = [e.job.progress for e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(0 < p < 1 for p in progress)  # saw chunks land one by one
    with pytest.raises(JobNotFoundError):
        service.events("no-such-job")


def test_cancel_drops_queued_chunks_at_once(make_service: ServiceFactory) -> None:
    service, recorder = make_service(seconds_per_audio_s=0.05, workers=1)
    job = service.submit_file(shared_file(CHAPTER))
    pool = service.status().pool
    assert pool is not None
    wait_until(lambda: service.status().pool.queued > 0)  # type: ignore[union-attr]
    cancelled = service.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert service.status().pool.queued == 0  # type: ignore[union-attr]
    final = service.wait(job.id, timeout=10)
    assert final.status is JobStatus.CANCELLED and final.outputs == {}
    with pytest.raises(InvalidTransitionError):
        service.cancel(job.id)
    with pytest.raises(JobNotFinishedError, match="cancelled"):
        service.subtitle_path(job.id, "srt")
    time.sleep(1.5)  # the chunk in flight at cancel may finish; nothing else runs
    assert len(recorder.chunks_of(job.id)) <= 1


def test_higher_priority_job_is_served_first(make_service: ServiceFactory) -> None:
    """A short job behind a long one goes first when priorities are equal (fairness), but not
    when the long one has the higher priority: then all its chunks run first."""
    service, recorder = make_service(seconds_per_audio_s=0.015, workers=1)
    high = service.submit_file(shared_file(CHAPTER), options=JobOptions(priority=5))
    low = service.submit_file(shared_file(JFK), options=JobOptions(priority=0))
    assert service.wait(low.id, timeout=60).status is JobStatus.DONE
    high_done = service.wait(high.id, timeout=60)
    assert high_done.status is JobStatus.DONE and high_done.chunks_total
    order = [d["group"] for k, d in recorder.events if k == "chunk_done"]
    assert order == [high.id] * high_done.chunks_total + [low.id]


def test_bad_inputs_fail_the_job_or_the_call_with_a_clear_message(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    service, _ = make_service()
    text = tmp_path / "notes.txt"
    text.write_text("this is not audio\n" * 50)
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.flac"
    data = shared_file(JFK).read_bytes()
    truncated.write_bytes(data[: len(data) // 3])

    with pytest.raises(MediaError, match="empty"):
        service.submit_file(empty)
    with pytest.raises(MediaError, match="no such file"):
        service.submit_file(tmp_path / "missing.wav")
    failed_text = service.wait(service.submit_file(text).id, timeout=30)
    assert failed_text.status is JobStatus.FAILED
    assert "not a media file" in (failed_text.error or "")
    failed_cut = service.wait(service.submit_file(truncated).id, timeout=30)
    assert failed_cut.status is JobStatus.FAILED
    assert "truncated" in (failed_cut.error or "")
    # The server goes on: a good job after the bad ones is done.
    assert service.wait(service.submit_file(shared_file(JFK)).id, 30).status is JobStatus.DONE


def test_upload_over_the_limit_is_refused_and_leaves_nothing(
    make_service: ServiceFactory,
) -> None:
    service, _ = make_service(max_upload_mb=0.5)
    with shared_file(JFK).open("rb") as fh, pytest.raises(PayloadTooLargeError, match=r"0\.5 MB"):
        service.submit_upload(fh, "jfk.flac")
    assert list(service.settings.inputs_dir.iterdir()) == []
    assert service.list() == []


def test_options_the_server_cannot_run_are_refused(make_service: ServiceFactory) -> None:
    service, _ = make_service(model="tiny.en")
    jfk = shared_file(JFK)
    with pytest.raises(UsageError, match=r"runs the model 'tiny\.en', not 'large-v3'"):
        service.submit_file(jfk, options=JobOptions(model="large-v3"))
    with pytest.raises(UsageError, match="English-only: it cannot translate"):
        service.submit_file(jfk, options=JobOptions(task="translate"))
    with pytest.raises(UsageError, match="English-only"):
        service.submit_file(jfk, options=JobOptions(language="de"))
    accepted = service.submit_file(jfk, options=JobOptions(model="whisper-1"))
    assert accepted.status is JobStatus.QUEUED


def test_failing_chunk_fails_the_job_and_names_the_chunk(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    service, _ = make_service(workers=2, fake=FakeBehaviour(fail_marker_dir=str(markers)))
    job = service.submit_file(shared_file(JFK))
    (markers / f"{job.id}-0.fail").touch()
    failed = service.wait(job.id, timeout=30)
    assert failed.status is JobStatus.FAILED
    assert "1 of 1 chunk(s) failed: chunk 0" in (failed.error or "")
    assert "fake failure" in (failed.error or "")


def test_sync_transcription_shares_the_pool(make_service: ServiceFactory) -> None:
    service, recorder = make_service(workers=2)
    transcript = service.transcribe_file(shared_file(JFK), JobOptions(language="en"))
    assert "fake transcript" in "".join(s.text for s in transcript.segments)
    assert transcript.duration == pytest.approx(11.0, abs=0.1)
    assert [k for k, d in recorder.events if k == "chunk_done" and d["group"].startswith("sync-")]
    assert service.list() == []  # nothing stored
    assert list(service.settings.inputs_dir.iterdir()) == []
    with pytest.raises(MediaError):
        service.transcribe_file(Path(__file__))


# -- resume --------------------------------------------------------------------------------------


def test_job_of_a_dead_process_resumes_at_once_without_redoing_saved_chunks(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """A job left running by a process that is gone (same host, its pid dead) is requeued at
    start-up, long before its lease would run out, and only its missing chunks are done."""
    audio = shared_file(CHAPTER)
    options = JobOptions(formats=("txt",))
    prepared = prepare(audio, options.pipeline_options())
    data_dir = tmp_path / "data"
    with JobStore(data_dir / "jobs.sqlite3") as store:
        job = store.create(str(audio), "chapter.flac", options.to_dict())
        store.claim(f"{socket.gethostname()}:999999999:dead", lease_s=3600)
        store.set_plan(job.id, prepared.duration_s, len(prepared.chunks))
        planted = (0, 2, len(prepared.chunks) - 1)
        for index in planted:
            word = Word(0.5, 1.0, f" planted{index}")
            result = ChunkResult((Segment(0.5, 1.0, word.word, (word,)),), "en")
            store.save_chunk(job.id, index, serialize.dumps_chunk(prepared.chunks[index], result))

    service, recorder = make_service(workers=2)
    done = service.wait(job.id, timeout=60)
    assert done.status is JobStatus.DONE, done.error
    assert done.attempts == 2
    missing = [i for i in range(len(prepared.chunks)) if i not in planted]
    assert sorted(recorder.chunks_of(job.id)) == missing
    text = service.subtitle_path(job.id, "txt").read_text()
    assert all(f"planted{i}" in text for i in planted)  # the saved results were used


def test_job_resumes_after_a_restart_without_redoing_finished_chunks(
    make_service: ServiceFactory,
) -> None:
    # One chunk per engine call, so that chunks finish one by one.
    first, first_recorder = make_service(seconds_per_audio_s=0.03, workers=1, batch_size=1)
    job = first.submit_file(shared_file(CHAPTER), options=JobOptions(formats=("txt",)))
    wait_until(lambda: first.get(job.id).chunks_done >= 2)
    first.close()  # a restart: running jobs go back to the queue with their chunks

    second, second_recorder = make_service(workers=2)
    done = second.wait(job.id, timeout=60)
    assert done.status is JobStatus.DONE, done.error
    before = first_recorder.chunks_of(job.id)
    after = second_recorder.chunks_of(job.id)
    assert done.chunks_total is not None and 2 <= len(before) < done.chunks_total
    assert set(before).isdisjoint(after)
    assert sorted(before + after) == list(range(done.chunks_total))


def test_saved_chunk_from_another_plan_is_redone(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    """A result saved for different chunk bounds (say, other VAD settings) is not trusted."""
    audio = shared_file(JFK)
    with JobStore(tmp_path / "data" / "jobs.sqlite3") as store:
        job = store.create(str(audio), "jfk.flac", JobOptions(formats=("txt",)).to_dict())
        store.set_plan(job.id, 11.0, 1)
        stale = ChunkResult((Segment(0, 1, " stale", (Word(0, 1, " stale"),)),), "en")
        store.save_chunk(job.id, 0, serialize.dumps_chunk(Chunk(0, 0, 16000), stale))
    service, recorder = make_service()
    done = service.wait(job.id, timeout=30)
    assert done.status is JobStatus.DONE
    assert recorder.chunks_of(job.id) == [0]
    assert "stale" not in service.subtitle_path(job.id, "txt").read_text()


# -- retention and URLs --------------------------------------------------------------------------


def test_retention_deletes_inputs_and_keeps_outputs(make_service: ServiceFactory) -> None:
    service, _ = make_service(retention_s=0.0, lease_s=0.6, maintenance_interval_s=0.1)
    job = service.submit_file(shared_file(JFK))
    done = service.wait(job.id, timeout=30)
    assert done.status is JobStatus.DONE
    wait_until(lambda: service.get(job.id).input_deleted, timeout=10)
    assert not Path(done.input).exists()
    assert not Path(done.input).parent.exists()
    assert service.subtitle_path(job.id, "srt").is_file()


@pytest.fixture
def media_server(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server over a folder holding jfk.flac; its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    shutil.copyfile(shared_file(JFK), root / "jfk.flac")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_url_job_downloads_with_yt_dlp_and_bad_urls_fail_clearly(
    make_service: ServiceFactory, media_server: str
) -> None:
    service, _ = make_service(workers=2)
    job = service.submit_url(f"{media_server}/jfk.flac", JobOptions(formats=("srt",)))
    assert job.input_name == "jfk.flac"
    missing = service.submit_url(f"{media_server}/nothing-here.mp3")
    done = service.wait(job.id, timeout=60)
    assert done.status is JobStatus.DONE, done.error
    assert done.duration == pytest.approx(11.0, abs=0.1)
    assert (service.settings.downloads_dir / job.id).is_dir()
    failed = service.wait(missing.id, timeout=60)
    assert failed.status is JobStatus.FAILED
    assert f"cannot download {media_server}/nothing-here.mp3" in (failed.error or "")
    assert "404" in (failed.error or "")
    for bad in ("file:///etc/passwd", "ftp://example.org/a.mp3", "not a url"):
        with pytest.raises(UsageError, match="http"):
            service.submit_url(bad)


def test_service_before_start_after_close_and_when_start_fails(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        workers=WorkerOptions(device="cpu", workers=1, threads=1),
        fake_engine=FakeBehaviour(),
    )
    service = Service(settings)
    assert service.health() == "starting"
    with pytest.raises(WhisperSubsError, match="not started"):
        service.get("x")
    with service:
        assert service.wait_ready(60) and service.health() == "ok"
    service.close()  # twice is fine
    assert not service.ready and service.health() == "stopping"

    unknown = Service(Settings(data_dir=tmp_path / "other", model="no-such-model"))
    with pytest.raises(ModelNotFoundError, match="unknown model 'no-such-model'"):
        unknown.start()
    assert unknown.health() == "stopping"  # start closed what it had opened


@pytest.mark.timeout(60)
def test_model_no_worker_can_load_makes_the_service_report_broken(tmp_path: Path) -> None:
    # A hub-like name passes resolve_model, but no worker can load it (no network here).
    cpu = WorkerOptions(device="cpu", workers=1, threads=1)
    bad_model = Settings(data_dir=tmp_path / "data", model="nowhere/none", workers=cpu)
    with Service(bad_model) as broken:
        with pytest.raises(WhisperSubsError, match="nowhere/none"):
            broken.wait_ready(30)
        assert broken.health().startswith("broken: ")
        assert not broken.ready
        assert broken.status().jobs[JobStatus.QUEUED] == 0
