"""The web UI: its pure formatting helpers, and the page itself in a real headless Chromium
(Debian's, driven by playwright) against a real ``whisper-subs serve`` process on loopback,
running the real engine (base, int8, CPU) on real speech.

The browser tests skip, saying why, where Chromium, playwright, gradio or the test audio is
absent. The server is killed at the end of the module, whatever the tests did.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import shared_file

pytest.importorskip("gradio", reason="gradio is not installed (pip install -e '.[serve]')")

from whisper_subs.jobs import Job, JobStatus
from whisper_subs.web import job_html, job_row, realtime_factor, server_text

log = logging.getLogger(__name__)

pytestmark = pytest.mark.timeout(180)

JFK = "openai-whisper/jfk.flac"  # 11 s: "... ask not what your country can do for you ..."
CHAPTER = "derived/ljspeech_LJ001-0001-0032_chapter_concat.flac"  # 234 s: long enough to cancel
MODEL = "base"
CHROMIUM = Path("/usr/bin/chromium")
# Headless on a closed network: no sandbox (containers), no GPU, and none of Chromium's own
# background traffic (QUIC probes, component updates, sync) that would wait on the internet.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path("/tmp/whisper-subs-ui.png")  # for people to look at after a run
SERVER_START_S = 120.0
JOB_DONE_MS = 120_000


# -- pure helpers --------------------------------------------------------------------------------


def make_job(**changes: Any) -> Job:
    job = Job(
        id="0" * 32,
        status=JobStatus.QUEUED,
        priority=0,
        created_at=1_700_000_000.0,
        started_at=None,
        finished_at=None,
        input="/data/inputs/x/talk.flac",
        input_name="talk.flac",
        options={},
        progress=0.0,
        duration=None,
        error=None,
        chunks_total=None,
        chunks_done=0,
        lease_owner=None,
        lease_expires_at=None,
        outputs={},
    )
    return replace(job, **changes)


def test_realtime_factor_is_final_once_done_and_estimated_while_running() -> None:
    done = make_job(
        status=JobStatus.DONE, duration=60.0, started_at=100.0, finished_at=120.0, progress=1.0
    )
    assert realtime_factor(done, now=500.0) == pytest.approx(3.0)
    running = make_job(status=JobStatus.RUNNING, duration=60.0, started_at=100.0, progress=0.5)
    assert realtime_factor(running, now=110.0) == pytest.approx(3.0)
    assert realtime_factor(make_job(), now=110.0) is None  # queued: not planned yet
    assert realtime_factor(replace(running, progress=0.0), now=110.0) is None


def test_job_html_escapes_names_and_errors() -> None:
    job = make_job(
        status=JobStatus.FAILED, input_name="<b>x</b>.flac", error="bad <media>", progress=0.25
    )
    text = job_html(job, now=0.0)
    assert "&lt;b&gt;x&lt;/b&gt;.flac" in text and "bad &lt;media&gt;" in text
    assert "<b>x</b>" not in text
    assert job_row(job, now=0.0)[:4] == [job.id, "<b>x</b>.flac", "failed", "25%"]


def test_server_text_lists_devices_and_health() -> None:
    devices = [{"id": "cuda:0", "workers": 2, "active": 1}, {"id": "cpu", "workers": 1}]
    text = server_text("ok", "base", devices)
    assert (
        text == "<p>Server ok · model base · devices: cuda:0: 2 workers (1 busy), cpu: 1 worker</p>"
    )
    broken = server_text("broken: <no model>", "x", [])
    assert "broken: &lt;no model&gt;" in broken and "devices: none yet" in broken


# -- a real server and a real browser ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(f"{url}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``whisper-subs serve`` (real engine, one CPU worker) in its own process group; its URL."""
    root = tmp_path_factory.mktemp("web-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "whisper_subs.cli", "serve", "--host", "127.0.0.1",
        "--port", str(port), "--data-dir", str(root / "data"), "--model", MODEL,
        "--device", "cpu", "--workers", "1", "--threads", "2",
    ]  # fmt: skip
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(root / "gradio"),  # Gradio's copies of uploads and downloads
        "NO_PROXY": "127.0.0.1,localhost",
    }
    log_path = root / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server not healthy:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # workers or a hung server, if any
        process.wait(10)
        log.info("server log:\n%s", log_path.read_text()[-4000:])


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's Chromium, headless, with a fresh profile; never a downloaded browser."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install chromium")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            accept_downloads=True,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    """The UI, opened at ``/`` (which redirects to ``/ui``), ready for input."""
    page = browser.new_page()
    page.set_default_timeout(30_000)
    elsewhere: list[str] = []  # the page must work on a closed network: loopback only
    page.on("request", lambda r: None if _local(r.url, server) else elsewhere.append(r.url))
    try:
        page.goto(server + "/")
        assert re.search(r"/ui/?$", page.url), page.url
        page.get_by_role("button", name="Transcribe").wait_for()
        yield page
    finally:
        page.close()
    assert not elsewhere, f"the page asked for non-local resources: {elsewhere[:5]}"


def _local(url: str, server: str) -> bool:
    return url.startswith((server + "/", "data:", "blob:"))


def _upload(page: Any, media: Path) -> None:
    page.locator("#media input[type=file]").set_input_files(str(media))
    # Uploaded: Gradio shows the file with a download link (during upload, only its name).
    page.locator(f"#media a[download='{media.name}']").wait_for()


def _status(page: Any, pattern: str) -> None:
    """Wait until the watched job's status matches ``pattern`` (a regular expression)."""
    status = page.locator("#job-status .status", has_text=re.compile(f"^(?:{pattern})$"))
    try:
        status.wait_for(timeout=JOB_DONE_MS)
    except Exception as exc:  # playwright's TimeoutError: say what the page shows instead
        shown = page.locator("#job-status").inner_text()
        toasts = page.locator(".toast-body").all_inner_texts()
        raise AssertionError(f"status never {pattern!r}: shows {shown!r}, toasts {toasts}") from exc


def _table_row(page: Any, job_id: str, status: str) -> Any:
    """The jobs table's row for ``job_id`` showing ``status``. Gradio draws the rows as
    ``div.virtual-row`` (its ``<tr>`` rows are a hidden copy for measuring the columns)."""
    return page.locator("#jobs .virtual-row", has_text=job_id).filter(has_text=status)


def srt_text(srt: str) -> str:
    """The words of an SRT file, lower case, on one line (cue numbers and times dropped)."""
    lines = [
        line
        for line in srt.splitlines()
        if line.strip() and not line.strip().isdigit() and "-->" not in line
    ]
    return " ".join(" ".join(lines).lower().split())


def test_upload_watch_it_finish_and_download_the_srt(page: Any, tmp_path: Path) -> None:
    jfk = shared_file(JFK)
    started = time.monotonic()
    _upload(page, jfk)
    page.get_by_role("button", name="Transcribe").click()
    _status(page, "done")
    log.info("jfk.flac done in the browser after %.1f s", time.monotonic() - started)

    status = page.locator("#job-status").inner_text()
    assert "jfk.flac" in status and "realtime" in status, status
    server = page.locator("#server").inner_text()
    assert "Server ok" in server and f"model {MODEL}" in server and "cpu: 1 worker" in server
    job_id = page.locator("#job-id textarea, #job-id input").first.input_value()
    assert re.fullmatch(r"[0-9a-f]{32}", job_id), job_id
    _table_row(page, job_id, "done").wait_for()

    with page.expect_download() as download_info:
        page.locator("#outputs a[download='jfk.srt']").click()
    srt = tmp_path / "jfk.srt"
    download_info.value.save_as(srt)
    assert "ask not what your country" in srt_text(srt.read_text()), srt.read_text()
    for name in ("jfk.vtt", "jfk.json"):
        assert page.locator(f"#outputs a[download='{name}']").count() == 1

    page.screenshot(path=tmp_path / "ui.png", full_page=True)
    shutil.copyfile(tmp_path / "ui.png", SCREENSHOT)


def test_cancel_a_long_job_and_pick_it_in_the_jobs_table(page: Any, browser: Any) -> None:
    chapter = shared_file(CHAPTER)
    _upload(page, chapter)
    page.get_by_role("button", name="Transcribe").click()
    _status(page, "queued|running")
    job_id = page.locator("#job-id textarea, #job-id input").first.input_value()
    page.get_by_role("button", name="Cancel this job").click()
    _status(page, "cancelled")
    _table_row(page, job_id, "cancelled").wait_for()

    fresh = browser.new_page()  # nothing shown yet: pick the job in the table
    try:
        fresh.goto(page.url)
        _table_row(fresh, job_id, "cancelled").locator(".body-cell").first.click()
        _status(fresh, "cancelled")
        assert chapter.name in fresh.locator("#job-status").inner_text()
    finally:
        fresh.close()
