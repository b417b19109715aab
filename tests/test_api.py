"""The HTTP API against real server processes (``whisper-subs serve`` on a loopback port).

Scheduling and load tests use the FakeEngine through the server's hidden test switch
(WHISPER_SUBS_FAKE_ENGINE, read by the serve CLI only) and say so in their names; the restart
test and the OpenAI SDK test run the real engine (tiny.en, int8, CPU) on real speech.
Every server is killed at the end of its fixture, whatever the test did.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from conftest import shared_file
from whisper_subs.jobs import JobStore

pytestmark = pytest.mark.timeout(120)

CHAPTER = "derived/ljspeech_LJ001-0001-0032_chapter_concat.flac"  # 234 s, ~9 chunks
JFK = "openai-whisper/jfk.flac"
CLIPS = [f"coqui-tts-ljspeech/LJ001-{i:04d}.flac" for i in range(1, 21)]
REAL_MODEL = "tiny.en"


# -- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One ``whisper-subs serve`` process in its own process group (workers included)."""

    def __init__(self, data_dir: Path, log_path: Path, args: list[str], env: dict[str, str]):
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "whisper_subs.cli", "serve", "--port", str(self.port),
            "--data-dir", str(data_dir), "--device", "cpu", *args,
        ]  # fmt: skip
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,  # so a kill reaches the workers too
        )

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"server not healthy after {timeout} s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL to the whole group: the server and its workers die at once."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # leftovers, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


ServerFactory = Callable[..., Server]


def _server_factory(root: Path) -> tuple[ServerFactory, list[Server]]:
    servers: list[Server] = []

    def start(
        name: str, *args: str, fake_engine: float | None = None, data_dir: Path | None = None
    ) -> Server:
        env = {"WHISPER_SUBS_FAKE_ENGINE": str(fake_engine)} if fake_engine is not None else {}
        server = Server(data_dir or root / name, root / f"{name}.log", list(args), env)
        servers.append(server)
        server.wait_healthy()
        return server

    return start, servers


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    start, servers = _server_factory(tmp_path)
    try:
        yield start
    finally:
        for server in servers:
            server.kill() if server.process.poll() is None else server.stop()


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with the FAKE engine (2 workers), shared by the scheduling and error tests."""
    start, servers = _server_factory(tmp_path_factory.mktemp("fake-server"))
    try:
        yield start("fake", "--workers", "2", fake_engine=0.002)
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def real_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with the real engine (tiny.en, 2 workers x 1 thread)."""
    start, servers = _server_factory(tmp_path_factory.mktemp("real-server"))
    try:
        yield start("real", "--model", REAL_MODEL, "--workers", "2", "--threads", "1")
    finally:
        for server in servers:
            server.stop()


# -- client helpers ------------------------------------------------------------------------------


def submit(server: Server, path: Path, **fields: str) -> dict[str, Any]:
    with path.open("rb") as fh:
        response = httpx.post(
            f"{server.url}/v1/jobs", files={"file": (path.name, fh)}, data=fields, timeout=60
        )
    assert response.status_code == 201, response.text
    return dict(response.json())


def get_job(server: Server, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/v1/jobs/{job_id}", timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_job(server: Server, job_id: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get_job(server, job_id)
        if job["status"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not finished after {timeout} s: {job}")


def assert_error(response: httpx.Response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status
    assert message in error["message"], error


def healthy(server: Server) -> bool:
    return httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


def make_long_audio(path: Path, clips: list[str], gap_s: float = 0.6) -> Path:
    """Real speech clips joined with short pauses, written as 16 kHz mono FLAC."""
    import av

    from whisper_subs.media import decode_audio

    gap = np.zeros(int(gap_s * 16000), dtype=np.float32)
    pieces = [piece for clip in clips for piece in (decode_audio(shared_file(clip)), gap)]
    samples = (np.clip(np.concatenate(pieces), -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


# -- load and fairness (fake engine) -------------------------------------------------------------


def test_20_concurrent_submissions_all_finish_fake_engine(fake_server: Server) -> None:
    clips = [shared_file(clip) for clip in CLIPS]
    with ThreadPoolExecutor(max_workers=20) as executor:
        created = list(executor.map(lambda p: submit(fake_server, p, formats="srt,json"), clips))
    assert len({job["id"] for job in created}) == 20
    finished = [wait_job(fake_server, job["id"]) for job in created]
    errors = [(job["name"], job["error"]) for job in finished if job["status"] != "done"]
    assert errors == []
    for job in finished:
        assert job["progress"] == 1.0 and job["chunks_done"] == job["chunks_total"] >= 1
        srt = httpx.get(f"{fake_server.url}{job['outputs']['srt']}", timeout=10)
        assert srt.status_code == 200 and srt.text.startswith("1\n")
        assert srt.headers["content-type"].startswith("application/x-subrip")
    listed = httpx.get(f"{fake_server.url}/v1/jobs", params={"status": "done"}, timeout=10)
    assert {j["id"] for j in created} <= {j["id"] for j in listed.json()["jobs"]}
    status = httpx.get(f"{fake_server.url}/v1/status", timeout=10).json()
    assert status["ready"] and status["slots"] == 2
    assert status["model_loads"] == 2  # warm pool: no model load per job


def test_short_job_behind_long_one_finishes_first_fake_engine(start_server: ServerFactory) -> None:
    # One worker at 0.04 s per audio second: the 234 s job needs ~9 s of worker time. One
    # chunk per engine call, so that the short job's chunk is not batched with long ones.
    server = start_server("fair", "--workers", "1", "--batch-size", "1", fake_engine=0.04)
    long_job = submit(server, shared_file(CHAPTER))
    deadline = time.monotonic() + 30
    while get_job(server, long_job["id"])["chunks_done"] < 1:
        assert time.monotonic() < deadline, "the long job never started"
        time.sleep(0.02)
    short = submit(server, shared_file(JFK))
    short_done = wait_job(server, short["id"])
    long_then = get_job(server, long_job["id"])
    assert short_done["status"] == "done"
    assert long_then["status"] == "running", "the long job finished before the short one"
    assert long_then["chunks_done"] <= long_then["chunks_total"] - 2  # long before, not just
    long_done = wait_job(server, long_job["id"])
    assert short_done["finished_at"] < long_done["finished_at"]


def test_events_stream_progress_until_finished(fake_server: Server) -> None:
    job = submit(fake_server, shared_file(CHAPTER))
    events: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream("GET", f"{fake_server.url}/v1/jobs/{job['id']}/events", timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    assert events[-1][0] == "finished" and events[-1][1]["progress"] == 1.0
    assert {kind for kind, _ in events} <= {"queued", "progress", "finished"}
    progress = [data["progress"] for _, data in events]
    assert progress == sorted(progress)
    missing = httpx.get(f"{fake_server.url}/v1/jobs/nope/events", timeout=10)
    assert_error(missing, 404, "no job has the id 'nope'")


def test_cancel_and_what_cannot_be_cancelled(fake_server: Server) -> None:
    job = submit(fake_server, shared_file(CHAPTER))
    cancelled = httpx.delete(f"{fake_server.url}/v1/jobs/{job['id']}", timeout=10)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = httpx.delete(f"{fake_server.url}/v1/jobs/{job['id']}", timeout=10)
    assert_error(again, 409, "cannot go from cancelled to cancelled")
    subtitles = httpx.get(f"{fake_server.url}/v1/jobs/{job['id']}/subtitles.srt", timeout=10)
    assert_error(subtitles, 409, "is cancelled")
    done = wait_job(fake_server, submit(fake_server, shared_file(JFK))["id"])
    finished = httpx.delete(f"{fake_server.url}/v1/jobs/{done['id']}", timeout=10)
    assert_error(finished, 409, "done is final")
    time.sleep(0.5)
    assert get_job(fake_server, job["id"])["status"] == "cancelled"
    assert get_job(fake_server, job["id"])["outputs"] == {}


def test_metrics_and_health(fake_server: Server) -> None:
    job = submit(fake_server, shared_file(JFK))
    wait_job(fake_server, job["id"])
    text = httpx.get(f"{fake_server.url}/metrics", timeout=10).text
    for name in (
        'whisper_subs_jobs{state="done"}',
        "whisper_subs_queue_depth",
        'whisper_subs_chunk_seconds_bucket{device="cpu",le="0.1"}',
        "whisper_subs_audio_seconds_total",
        "whisper_subs_realtime_factor",
        'whisper_subs_workers{device="cpu"} 2.0',
        "whisper_subs_ready 1.0",
    ):
        assert name in text, name
    done = re.search(r'^whisper_subs_jobs\{state="done"\} (\d+)', text, re.M)
    assert done is not None and int(float(done.group(1))) >= 1
    assert httpx.get(f"{fake_server.url}/healthz", timeout=5).json() == {"status": "ok"}
    root = httpx.get(f"{fake_server.url}/", timeout=5)
    assert root.status_code == 307 and root.headers["location"] in ("/ui", "/docs")


# -- bad input -----------------------------------------------------------------------------------


def test_bad_input_gets_a_clear_4xx_or_a_failed_job_and_the_server_stays_healthy(
    fake_server: Server, tmp_path: Path
) -> None:
    url = fake_server.url
    text = tmp_path / "notes.txt"
    text.write_text("this is not audio\n" * 100)
    truncated = tmp_path / "cut.flac"
    data = shared_file(JFK).read_bytes()
    truncated.write_bytes(data[: len(data) // 3])

    empty = httpx.post(f"{url}/v1/jobs", files={"file": ("empty.flac", b"")}, timeout=10)
    assert_error(empty, 422, "is empty")
    failed_text = wait_job(fake_server, submit(fake_server, text)["id"])
    assert failed_text["status"] == "failed"
    assert "not a media file" in failed_text["error"]
    failed_cut = wait_job(fake_server, submit(fake_server, truncated)["id"])
    assert failed_cut["status"] == "failed" and "truncated" in failed_cut["error"]
    srt = httpx.get(f"{url}/v1/jobs/{failed_cut['id']}/subtitles.srt", timeout=10)
    assert_error(srt, 409, "truncated")

    assert_error(httpx.get(f"{url}/v1/jobs/0123abc", timeout=10), 404, "no job has the id")
    assert_error(httpx.delete(f"{url}/v1/jobs/0123abc", timeout=10), 404, "no job has the id")
    assert_error(
        httpx.post(f"{url}/v1/jobs", data={"language": "en"}, files={"x": ("a", b"1")}, timeout=10),
        400,
        "file field named 'file'",
    )
    assert_error(
        httpx.post(f"{url}/v1/jobs", files={"file": ("a.wav", b"1")}, data={"task": "x"}),
        400,
        "task must be one of",
    )
    assert_error(httpx.post(f"{url}/v1/jobs", json={"colour": "red"}, timeout=10), 400, "url")
    assert_error(
        httpx.post(f"{url}/v1/jobs", json={"url": "file:///etc/passwd"}, timeout=10), 400, "http"
    )
    assert_error(httpx.post(f"{url}/v1/jobs", content=b"hello", timeout=10), 400, "content type")
    assert_error(httpx.get(f"{url}/v1/jobs", params={"status": "lost"}, timeout=10), 422, "status")
    assert_error(httpx.get(f"{url}/v1/nothing", timeout=10), 404, "Not Found")
    with text.open("rb") as fh:
        sync = httpx.post(
            f"{url}/v1/audio/transcriptions", files={"file": ("notes.txt", fh)}, timeout=30
        )
    assert_error(sync, 422, "not a media file")
    assert healthy(fake_server)
    good = wait_job(fake_server, submit(fake_server, shared_file(JFK))["id"])
    assert good["status"] == "done"


def test_oversized_upload_and_api_key_fake_engine(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    server = start_server(
        "guarded", "--workers", "1", "--max-upload-mb", "0.5", "--api-key", "s3cret",
        fake_engine=0.0,
    )  # fmt: skip
    auth = {"Authorization": "Bearer s3cret"}
    jfk = shared_file(JFK)  # 1.1 MB
    no_key = httpx.get(f"{server.url}/v1/jobs", timeout=10)
    assert_error(no_key, 401, "API key")
    assert no_key.headers["www-authenticate"] == "Bearer"
    wrong = httpx.get(f"{server.url}/v1/jobs", headers={"Authorization": "Bearer nope"})
    assert_error(wrong, 401, "API key")
    assert httpx.get(f"{server.url}/v1/jobs", headers=auth, timeout=10).status_code == 200
    assert healthy(server)  # health and metrics need no key
    assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 200

    with jfk.open("rb") as fh:
        big = httpx.post(
            f"{server.url}/v1/jobs", files={"file": ("jfk.flac", fh)}, headers=auth, timeout=30
        )
    assert_error(big, 413, "larger than the 0.5 MB")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted as bytes arrive
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="jfk.flac"\r\n\r\n'
        body = jfk.read_bytes()
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]
        yield b"\r\n--xyz--\r\n"

    streamed = httpx.post(
        f"{server.url}/v1/audio/transcriptions",
        content=chunks(),
        headers={**auth, "Content-Type": "multipart/form-data; boundary=xyz"},
        timeout=30,
    )
    assert_error(streamed, 413, "larger than the 0.5 MB")
    assert healthy(server)
    small = make_long_audio(tmp_path / "small.flac", CLIPS[1:2])  # 1.9 s, well under the limit
    with small.open("rb") as fh:
        ok = httpx.post(
            f"{server.url}/v1/jobs", files={"file": ("small.flac", fh)}, headers=auth, timeout=30
        )
    assert ok.status_code == 201, ok.text


# -- real engine ---------------------------------------------------------------------------------


def test_openai_sdk_against_the_server(real_server: Server, tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{real_server.url}/v1", api_key="unused", max_retries=0)
    jfk = shared_file(JFK)
    phrase = "ask not what your country can do for you"

    with jfk.open("rb") as fh:
        result = client.audio.transcriptions.create(model="whisper-1", file=fh)
    assert phrase in result.text.lower()

    with jfk.open("rb") as fh:
        verbose = client.audio.transcriptions.create(
            model="whisper-1", file=fh, language="en", response_format="verbose_json",
            timestamp_granularities=["word", "segment"], temperature=0.0,
            prompt="John F. Kennedy, inaugural address.",
        )  # fmt: skip
    assert verbose.language == "en" and verbose.duration == pytest.approx(11.0, abs=0.1)
    assert phrase in verbose.text.lower()
    assert verbose.segments and verbose.words
    assert [w.word for w in verbose.words][:3] == ["And", "so", "my"]
    starts = [w.start for w in verbose.words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in verbose.words)

    with jfk.open("rb") as fh:
        srt = client.audio.transcriptions.create(model="whisper-1", file=fh, response_format="srt")
    assert isinstance(srt, str) and srt.startswith("1\n00:00:")
    with jfk.open("rb") as fh:
        vtt = client.audio.transcriptions.create(model="whisper-1", file=fh, response_format="vtt")
    assert vtt.startswith("WEBVTT")
    with jfk.open("rb") as fh:
        text = client.audio.transcriptions.create(
            model="whisper-1", file=fh, response_format="text"
        )
    assert phrase in text.lower()

    with (
        jfk.open("rb") as fh,
        warnings.catch_warnings(),  # some SDK versions mark translations deprecated
        pytest.raises(openai.BadRequestError, match="English-only"),
    ):
        warnings.simplefilter("ignore", DeprecationWarning)
        client.audio.translations.create(model="whisper-1", file=fh)
    with jfk.open("rb") as fh, pytest.raises(openai.BadRequestError, match="not 'gpt-4o"):
        client.audio.transcriptions.create(model="gpt-4o-transcribe", file=fh)
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio at all\n" * 20)
    with notes.open("rb") as fh, pytest.raises(openai.UnprocessableEntityError):
        client.audio.transcriptions.create(model="whisper-1", file=fh)
    assert healthy(real_server)


@pytest.mark.timeout(240)
def test_sigkill_mid_job_then_restart_resumes_without_redoing_chunks(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    """Kill -9 the server (and its workers) while a job runs; the restarted server finishes it
    from the saved chunks, with the same text as a run that was never interrupted."""
    audio = make_long_audio(tmp_path / "speech.flac", CLIPS[:10])  # ~73 s: 3 chunks
    data_dir = tmp_path / "data"
    # One worker, one chunk per engine call: chunks finish one by one (a window to kill in),
    # and each chunk is decoded alone, so its text cannot depend on what it was batched with.
    args = ("--model", REAL_MODEL, "--workers", "1", "--threads", "2", "--batch-size", "1")
    first = start_server("first", *args, data_dir=data_dir)
    job_id = submit(first, audio, formats="txt,srt,json")["id"]
    deadline = time.monotonic() + 120
    while get_job(first, job_id)["chunks_done"] < 1:
        assert time.monotonic() < deadline, f"no chunk finished:\n{first.log()}"
        time.sleep(0.02)
    first.kill()

    with JobStore(data_dir / "jobs.sqlite3") as store:
        killed = store.get(job_id)
        saved_before = set(store.chunk_results(job_id))
    total = killed.chunks_total
    assert killed.status.value == "running" and total is not None
    assert 1 <= len(saved_before) < total, "killed too late: every chunk was already saved"

    second = start_server("second", *args, data_dir=data_dir)
    resumed = wait_job(second, job_id, timeout=150)
    assert resumed["status"] == "done", resumed["error"]
    assert resumed["attempts"] == 2

    saved_pattern = re.compile(rf"job {job_id}: chunk (\d+) saved")
    first_run = [int(i) for i in saved_pattern.findall(first.log())]
    second_run = [int(i) for i in saved_pattern.findall(second.log())]
    assert set(first_run) == saved_before
    assert sorted(first_run + second_run) == list(range(total))  # each chunk done exactly once
    assert f"{len(saved_before)} already saved, submitting {total - len(saved_before)}" in (
        second.log()
    )

    fresh = wait_job(second, submit(second, audio, formats="txt")["id"], timeout=150)
    assert fresh["status"] == "done" and fresh["attempts"] == 1
    resumed_txt = httpx.get(f"{second.url}/v1/jobs/{job_id}/subtitles.txt", timeout=10).text
    fresh_txt = httpx.get(f"{second.url}/v1/jobs/{fresh['id']}/subtitles.txt", timeout=10).text
    assert resumed_txt == fresh_txt
    assert "printing" in resumed_txt.lower()  # LJ001-0001: "Printing, in the only sense..."


def test_server_log_reports_no_model_load_per_job(real_server: Server) -> None:
    """Several jobs on the warm real-engine server: still one model load per worker."""
    ids = [submit(real_server, shared_file(CLIPS[i]), formats="txt")["id"] for i in (1, 7, 12)]
    for job_id in ids:
        assert wait_job(real_server, job_id)["status"] == "done"
    status = httpx.get(f"{real_server.url}/v1/status", timeout=10).json()
    assert status["model_loads"] == 2 and status["worker_deaths"] == 0
    assert status["jobs"]["done"] >= 3


# -- in-process: the app's pure parts ------------------------------------------------------------


def test_healthz_is_503_until_the_service_has_started(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from whisper_subs.api import create_app, healthz
    from whisper_subs.engine import FakeBehaviour
    from whisper_subs.service import Settings

    app = create_app(Settings(data_dir=tmp_path / "data", fake_engine=FakeBehaviour()))
    service = app.state.service  # the lifespan (service start) has not run
    response = healthz(service)
    assert response.status_code == 503 and json.loads(response.body) == {"status": "starting"}
    assert b"whisper_subs_ready 0.0" in generate_latest(app.state.metrics.registry)


def test_error_classes_map_to_their_http_status() -> None:
    from whisper_subs import errors
    from whisper_subs.api import status_for

    expected = {
        errors.AuthenticationError: 401, errors.JobNotFoundError: 404,
        errors.OutputNotFoundError: 404, errors.InvalidTransitionError: 409,
        errors.JobNotFinishedError: 409, errors.PayloadTooLargeError: 413,
        errors.MediaError: 422, errors.DownloadError: 422, errors.UsageError: 400,
        errors.ModelNotFoundError: 400, errors.ChunkFailedError: 500,
        errors.DeviceError: 503, errors.WhisperSubsError: 500,
    }  # fmt: skip
    assert {kind: status_for(kind("x")) for kind in expected} == expected


def test_openai_shapes_from_a_transcript() -> None:
    from whisper_subs.api import bare_word, openai_response
    from whisper_subs.types import Segment, Transcript, Word

    words = (Word(0.0, 0.4, " Hello,"), Word(0.5, 0.9, " world."), Word(1.0, 1.1, " —"))
    transcript = Transcript("en", 2.0, (Segment(0.0, 1.1, " Hello, world. —", words),))
    verbose = json.loads(openai_response(transcript, "transcribe", "verbose_json", ("word",)).body)
    assert verbose["text"] == "Hello, world. —"
    assert verbose["words"] == [
        {"word": "Hello", "start": 0.0, "end": 0.4},
        {"word": "world", "start": 0.5, "end": 0.9},
    ]
    assert "segments" not in verbose  # only the granularity asked for
    default = json.loads(openai_response(transcript, "translate", "verbose_json", ()).body)
    assert default["task"] == "translate" and default["segments"][0]["id"] == 0
    assert "words" not in default
    assert json.loads(openai_response(transcript, "transcribe", "json", ()).body) == {
        "text": "Hello, world. —"
    }
    assert bare_word(" don't") == "don't" and bare_word(" «¿Qué?»") == "Qué"
