"""The web UI: a Gradio page over the service layer, mounted in the API's app at ``/ui``.

Callbacks only translate: UI values become ``JobOptions`` and ``Service`` calls, jobs become
text and table rows, and ``WhisperSubsError`` becomes ``gr.Error`` (a message in the page).
The UI never touches the workers or the store. One ``gr.Timer`` polls every second: the job
being watched, the jobs table and the server's devices (``Service.status``).

Gradio's telemetry and version check are off (``analytics_enabled=False``); the page loads no
third-party assets, so it works on a closed network. With an API key configured, the page asks
for it as the password.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from typing import Any

import gradio as gr
from fastapi import FastAPI

from .cues import CUE_FLAGS
from .errors import WhisperSubsError
from .jobs import Job, JobStatus
from .service import JobOptions, Service

log = logging.getLogger(__name__)

UI_PATH = "/ui"
POLL_INTERVAL_S = 1.0
DOWNLOAD_FORMATS = ("srt", "vtt", "json")
TABLE_HEADERS = ["id", "name", "status", "progress", "x realtime", "created"]
TABLE_LIMIT = 50
TASK_CHOICES = ("transcribe", "translate")
CUE_LABELS = {
    "max_line_chars": "Max characters per line",
    "max_lines": "Max lines per cue",
    "max_cps": "Max characters per second",
    "min_cue_s": "Shortest cue (s)",
    "max_cue_s": "Longest cue (s)",
    "min_gap_s": "Gap between cues (s)",
}
# Per-job device choice exists only if the service's JobOptions grows this field; until then
# the server spreads every job over all its devices and the checkbox just says so.
ALL_DEVICES_OPTION = "all_devices"
CACHE_CLEANUP_S = (3600, 6 * 3600)  # Gradio's copies of uploads/downloads: every hour, > 6 h old


def mount_ui(app: FastAPI, service: Service) -> None:
    """Mount the web UI on ``app`` at ``/ui``; it reaches the jobs only through ``service``."""
    _in_running_loop(lambda: _mount(app, service))
    log.info("web UI mounted at %s", UI_PATH)


def _mount(app: FastAPI, service: Service) -> None:
    settings = service.settings
    key = settings.api_key
    gr.mount_gradio_app(
        app,
        build_ui(service),
        path=UI_PATH,
        footer_links=["settings"],
        run_history=False,
        auth=(lambda _user, password: _key_matches(password, key)) if key else None,
        auth_message="Enter this server's API key as the password (any user name).",
        allowed_paths=[str(settings.outputs_dir)],  # the subtitle downloads, nothing else
        max_file_size=settings.max_upload_bytes,
        ssr_mode=False,  # no Node server
        enable_monitoring=False,
        pwa=False,
        mcp_server=False,
    )


def _in_running_loop(build: Callable[[], None]) -> None:
    """Run ``build`` where an asyncio loop is running.

    Gradio makes its asyncio locks with ``asyncio.new_event_loop()`` when no loop runs (as in
    ``create_app`` before uvicorn starts) and never closes those loops: "ResourceWarning:
    unclosed event loop", an error under ``-W error``. A short-lived loop avoids them; the locks
    bind to the server's loop on first use (Python >= 3.10).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:

        async def run() -> None:
            build()

        asyncio.run(run())
    else:
        build()


def build_ui(service: Service) -> gr.Blocks:
    """The page: a form on the left, the watched job on the right, all jobs below."""
    per_job_devices = ALL_DEVICES_OPTION in {f.name for f in fields(JobOptions)}
    with gr.Blocks(
        title="whisper-subs", analytics_enabled=False, delete_cache=CACHE_CLEANUP_S
    ) as blocks:
        gr.Markdown("# whisper-subs\nLong audio and video to readable subtitles with Whisper.")
        server = gr.HTML(elem_id="server")  # health, model and devices, every second
        with gr.Row():
            with gr.Column(scale=1):
                media = gr.File(label="Media file", type="filepath", elem_id="media")
                url = gr.Textbox(label="…or a URL", placeholder="https://…", elem_id="url")
                gr.Textbox(
                    label="Model",
                    value=service.settings.model,
                    interactive=False,
                    info="the server's model, loaded once for all jobs",
                )
                with gr.Row():
                    language = gr.Dropdown(
                        label="Language",
                        choices=language_choices(),
                        value="auto",
                        allow_custom_value=True,  # tags such as zh-TW
                        info="auto: detected",
                    )
                    task = gr.Radio(label="Task", choices=list(TASK_CHOICES), value="transcribe")
                all_devices = gr.Checkbox(
                    label="Use all devices",
                    value=True,
                    interactive=per_job_devices,
                    info=None
                    if per_job_devices
                    else "this server spreads every job over all its devices",
                )
                with gr.Accordion("Subtitle options (empty: the language's defaults)", open=False):
                    cues = [gr.Number(label=CUE_LABELS.get(n, n), value=None) for n in CUE_FLAGS]
                submit = gr.Button("Transcribe", variant="primary", elem_id="submit")
            with gr.Column(scale=1):
                job_id = gr.Textbox(
                    label="Job",
                    elem_id="job-id",
                    info="the job shown here; pick one in the table below",
                )
                status = gr.HTML(elem_id="job-status")
                files = gr.File(
                    label="Subtitles", file_count="multiple", interactive=False, elem_id="outputs"
                )
                cancel = gr.Button("Cancel this job", variant="stop", elem_id="cancel")
        table = gr.Dataframe(
            headers=TABLE_HEADERS,
            label="Jobs (newest first)",
            interactive=False,
            wrap=True,
            elem_id="jobs",
        )
        shown = gr.State("")  # "<id>:<status>" whose downloads are on the page
        timer = gr.Timer(POLL_INTERVAL_S)

        ui = _Callbacks(service, per_job_devices)
        private: dict[str, Any] = {"api_visibility": "private"}
        submit.click(
            ui.submit, [media, url, language, task, all_devices, *cues], [job_id], **private
        )
        cancel.click(ui.cancel, [job_id], [status], **private)
        table.select(ui.select, None, [job_id], **private)
        refresh = (ui.refresh, [job_id, shown], [server, status, files, table, shown])
        timer.tick(*refresh, show_progress="hidden", concurrency_limit=None, **private)
        job_id.change(*refresh, show_progress="hidden", **private)
        blocks.load(*refresh, show_progress="hidden", **private)
    return blocks


class _Callbacks:
    """The UI's event handlers: each one a ``Service`` call and some formatting."""

    def __init__(self, service: Service, per_job_devices: bool) -> None:
        self.service = service
        self.per_job_devices = per_job_devices

    def submit(
        self,
        media: str | None,
        url: str | None,
        language: str | None,
        task: str,
        all_devices: bool,
        *cue_values: float | None,
    ) -> str:
        values = {
            "language": language,
            "task": task,
            **dict(zip(CUE_FLAGS, cue_values, strict=True)),
        }
        if self.per_job_devices:
            values[ALL_DEVICES_OPTION] = all_devices
        with _shown_as_error():
            options = JobOptions.from_mapping(values)
            if media:
                job = self.service.submit_file(media, options=options)
            elif url and url.strip():
                job = self.service.submit_url(url.strip(), options)
            else:
                raise gr.Error("Choose a media file or give a URL first.")
        log.info("web UI: job %s submitted (%s)", job.id, job.input_name)
        return job.id

    def cancel(self, job_id: str) -> str:
        if not job_id.strip():
            raise gr.Error("No job to cancel: pick one in the jobs table.")
        with _shown_as_error():
            job = self.service.cancel(job_id.strip())
        log.info("web UI: job %s cancelled", job.id)
        return job_html(job, time.time())

    def select(self, event: gr.SelectData) -> str:
        row = event.row_value or []
        return str(row[0]) if row else ""

    def refresh(self, job_id: str, shown: str) -> tuple[str, str, Any, list[list[Any]], str]:
        """The server line, the watched job's status and downloads, and the jobs table, now."""
        now = time.time()
        status = self.service.status()
        server = server_text(self.service.health(), status.model, status.to_json()["devices"])
        rows = [job_row(job, now) for job in self.service.list(limit=TABLE_LIMIT)]
        job_id = (job_id or "").strip()
        if not job_id:
            return server, "", None, rows, ""
        try:
            job = self.service.get(job_id)
            key = f"{job.id}:{job.status.value}"
            if key == shown:
                files: Any = gr.skip()  # unchanged: do not send the files again every second
            elif job.status is JobStatus.DONE:
                files = [
                    str(self.service.subtitle_path(job.id, fmt))
                    for fmt in DOWNLOAD_FORMATS
                    if fmt in job.outputs
                ]
            else:
                files = None
        except WhisperSubsError as exc:  # an unknown id typed in, an output gone from disk
            return server, f"<p class='error'>{html.escape(str(exc))}</p>", None, rows, ""
        return server, job_html(job, now), files, rows, key


@contextmanager
def _shown_as_error() -> Iterator[None]:
    """Turn the service's errors into a message in the page (``gr.Error``)."""
    try:
        yield
    except WhisperSubsError as exc:
        raise gr.Error(str(exc)) from exc


# -- presentation (pure) -------------------------------------------------------------------------


def language_choices() -> list[str]:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    return ["auto", *sorted(_LANGUAGE_CODES)]


def realtime_factor(job: Job, now: float) -> float | None:
    """Audio seconds transcribed per wall second: final once done, an estimate while running."""
    if not job.duration or job.started_at is None:
        return None
    if job.status is JobStatus.DONE and job.finished_at is not None:
        wall, audio = job.finished_at - job.started_at, job.duration
    elif job.status is JobStatus.RUNNING:
        wall, audio = now - job.started_at, job.duration * job.progress
    else:
        return None
    return audio / wall if wall > 0 and audio > 0 else None


def job_row(job: Job, now: float) -> list[Any]:
    factor = realtime_factor(job, now)
    return [
        job.id,
        job.input_name,
        job.status.value,
        f"{job.progress:.0%}",
        f"{factor:.1f}×" if factor else "",
        datetime.fromtimestamp(job.created_at).strftime("%Y-%m-%d %H:%M:%S"),
    ]


def job_html(job: Job, now: float) -> str:
    """The watched job: status, progress bar, chunks, audio length, speed and error."""
    factor = realtime_factor(job, now)
    facts = [f"<b class='status'>{job.status.value}</b>", html.escape(job.input_name)]
    if job.chunks_total:
        facts.append(f"{job.chunks_done}/{job.chunks_total} chunks")
    if job.duration:
        facts.append(f"{job.duration:.1f} s of audio")
    if factor:
        facts.append(f"{factor:.1f}× realtime")
    parts = [
        f"<p>{' · '.join(facts)}</p>",
        f"<progress value='{job.progress:.3f}' max='1' style='width:100%'></progress>",
    ]
    if job.error:
        parts.append(f"<p class='error'>{html.escape(job.error)}</p>")
    return "\n".join(parts)


def server_text(health: str, model: str, devices: Sequence[dict[str, Any]]) -> str:
    """``Server ok · model base · devices: cpu: 2 workers (1 busy)``, as HTML."""
    line = f"Server {health} · model {model} · devices: {devices_text(devices)}"
    return f"<p>{html.escape(line)}</p>"


def devices_text(devices: Sequence[dict[str, Any]]) -> str:
    """``cpu: 2 workers (1 busy)``, one entry per device of ``Service.status()``."""
    if not devices:
        return "none yet"
    return ", ".join(
        f"{d['id']}: {d['workers']} worker{'s' if d['workers'] != 1 else ''}"
        + (f" ({d['active']} busy)" if d.get("active") else "")
        for d in devices
    )


def _key_matches(given: str, key: str) -> bool:
    return hmac.compare_digest(given.encode(), key.encode())
