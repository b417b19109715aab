"""The HTTP API: FastAPI over the service layer, with no business logic in the routes.

``create_app(settings)`` builds the app; its lifespan starts and stops the ``Service``. Routers
per resource: jobs (``/v1/jobs``), the OpenAI-compatible audio endpoints (``/v1/audio``), and the
server itself (``/v1/status``, ``/healthz``, ``/metrics``). Every error is JSON,
``{"error": {"message", "type", "code"}}`` (the shape OpenAI's clients read), with its HTTP
status chosen in one place (``ERROR_STATUS``). The web UI, when ``whisper_subs.web`` imports, is
mounted at ``/ui`` and ``/`` redirects there.
"""

from __future__ import annotations

import hmac
import json
import logging
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import (
    AuthenticationError,
    ChunkFailedError,
    DeviceError,
    DownloadError,
    InvalidTransitionError,
    JobNotFinishedError,
    JobNotFoundError,
    MediaError,
    ModelNotFoundError,
    OutOfMemoryError,
    OutputNotFoundError,
    PayloadTooLargeError,
    UsageError,
    WhisperSubsError,
)
from .formats import WRITERS
from .jobs import Job, JobStatus
from .metrics import ServiceMetrics
from .service import JobOptions, Service, Settings
from .types import Transcript

log = logging.getLogger(__name__)

# First match wins: subclasses before their bases.
ERROR_STATUS: tuple[tuple[type[WhisperSubsError], int], ...] = (
    (AuthenticationError, 401),
    (JobNotFoundError, 404),
    (OutputNotFoundError, 404),
    (InvalidTransitionError, 409),
    (JobNotFinishedError, 409),
    (PayloadTooLargeError, 413),
    (MediaError, 422),
    (DownloadError, 422),
    (UsageError, 400),
    (ModelNotFoundError, 400),
    (ChunkFailedError, 500),
    (DeviceError, 503),
    (OutOfMemoryError, 503),
)
MEDIA_TYPES = {
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "json": "application/json",
    "txt": "text/plain",
    "tsv": "text/tab-separated-values",
}
OPENAI_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
GRANULARITIES = ("word", "segment")
MULTIPART_SLACK_BYTES = 1 << 20  # boundaries and form fields around the file itself
DRAIN_LIMIT_BYTES = 64 << 20  # read (and drop) this much of a too-large body before answering


# -- errors -------------------------------------------------------------------------------------


def status_for(exc: WhisperSubsError) -> int:
    for kind, status in ERROR_STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_body(message: str, kind: str, status: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": status}}


def error_response(message: str, kind: str, status: int) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(message, kind, status), status_code=status, headers=headers)


async def _on_our_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WhisperSubsError)
    status = status_for(exc)
    if status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc)
    return error_response(str(exc), type(exc).__name__, status)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    response = error_response(str(exc.detail), "HTTPError", exc.status_code)
    response.headers.update(exc.headers or {})
    return response


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in exc.errors()
    )
    return error_response(f"invalid request: {problems}", "RequestValidationError", 422)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, from the Content-Length header at once
    or while a chunked body streams in, before any route spools it to disk."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes + MULTIPART_SLACK_BYTES
        message = (
            f"request body is larger than the {self.max_bytes / (1 << 20):g} MB this server "
            "accepts; split the file or ask for a larger --max-upload-mb"
        )
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            if int(length) <= limit + DRAIN_LIMIT_BYTES:
                await _drain(receive)  # so that the client, still sending, reads our answer
            await error_response(message, "PayloadTooLargeError", 413)(scope, receive, send)
            return
        received = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            incoming = await receive()
            if incoming["type"] == "http.request":
                received += len(incoming.get("body", b""))
                if received > limit:
                    over = True
                    raise PayloadTooLargeError(message)
            return incoming

        async def guarded_send(outgoing: Message) -> None:
            nonlocal started
            if over:
                return  # the route's answer to a body cut short; ours follows
            started = True
            await send(outgoing)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except PayloadTooLargeError:
            if started:
                raise
        if over and not started:
            await error_response(message, "PayloadTooLargeError", 413)(scope, receive, send)


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


# -- dependencies -------------------------------------------------------------------------------


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


def require_api_key(request: Request) -> None:
    """With an API key configured, every /v1 request must send it as a Bearer token."""
    key = get_service(request).settings.api_key
    if not key:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise AuthenticationError(
            "missing or wrong API key: send the header 'Authorization: Bearer <key>'"
        )


# -- presentation -------------------------------------------------------------------------------


def job_json(job: Job) -> dict[str, Any]:
    """A job as the API shows it: no server paths, outputs as download URLs."""
    is_url = job.input.startswith(("http://", "https://"))
    wall = (
        job.finished_at - job.started_at
        if job.finished_at is not None and job.started_at is not None
        else None
    )
    return {
        "id": job.id,
        "status": job.status.value,
        "progress": round(job.progress, 4),
        "error": job.error,
        "name": job.input_name,
        "url": job.input if is_url else None,
        "duration": job.duration,
        "priority": job.priority,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "chunks_total": job.chunks_total,
        "chunks_done": job.chunks_done,
        "attempts": job.attempts,
        "realtime_factor": round(job.duration / wall, 2) if job.duration and wall else None,
        "options": job.options,
        "outputs": {fmt: f"/v1/jobs/{job.id}/subtitles.{fmt}" for fmt in sorted(job.outputs)},
        "input_deleted": job.input_deleted,
    }


def transcript_text(transcript: Transcript) -> str:
    return " ".join(s.text.strip() for s in transcript.segments if s.text.strip())


def openai_response(
    transcript: Transcript, task: str, response_format: str, granularities: tuple[str, ...]
) -> Response:
    """A transcript in the shape OpenAI's audio endpoints answer with."""
    text = transcript_text(transcript)
    if response_format == "text":
        return PlainTextResponse(text + "\n")
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(WRITERS[response_format](transcript), media_type="text/plain")
    if response_format == "json":
        return JSONResponse({"text": text})
    body: dict[str, Any] = {
        "task": task,
        "language": transcript.language,
        "duration": round(transcript.duration, 3),
        "text": text,
    }
    if "segment" in granularities or not granularities:
        body["segments"] = [
            {
                "id": i, "seek": 0, "start": s.start, "end": s.end, "text": s.text,
                "tokens": [], "temperature": 0.0, "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio, "no_speech_prob": s.no_speech_prob,
            }
            for i, s in enumerate(transcript.segments)
        ]  # fmt: skip
    if "word" in granularities:
        body["words"] = [
            {"word": bare, "start": w.start, "end": w.end}
            for s in transcript.segments
            for w in s.words
            if (bare := bare_word(w.word))
        ]
    return JSONResponse(body)


def bare_word(word: str) -> str:
    """A word as OpenAI lists it: no surrounding spaces or punctuation ("so," -> "so")."""
    chars = list(word.strip())
    while chars and unicodedata.category(chars[0]).startswith("P"):
        chars.pop(0)
    while chars and unicodedata.category(chars[-1]).startswith("P"):
        chars.pop()
    return "".join(chars)


def _sse(event: str, data: Mapping[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _form_fields(form: FormData, skip: tuple[str, ...]) -> dict[str, str]:
    """Text fields of a form; a field given several times (formats) is joined with commas."""
    fields: dict[str, list[str]] = {}
    for name, value in form.multi_items():
        if name in skip or isinstance(value, UploadFile):
            continue
        fields.setdefault(name, []).append(value)
    return {name: ",".join(values) for name, values in fields.items()}


def _upload(form: FormData) -> UploadFile:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise UsageError("send the media as a multipart/form-data file field named 'file'")
    return upload


# -- jobs ---------------------------------------------------------------------------------------

jobs = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(require_api_key)])


@jobs.post("", status_code=201)
async def create_job(request: Request, service: ServiceDep) -> JSONResponse:
    """A job from a multipart upload (``file`` and option fields) or JSON ``{"url": ...}``."""
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError as exc:
            raise UsageError(f"request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            raise UsageError('a JSON job needs {"url": "https://..."}; upload files as multipart')
        options = JobOptions.from_mapping({k: v for k, v in body.items() if k != "url"})
        job = await run_in_threadpool(service.submit_url, body["url"], options)
    elif content_type.startswith("multipart/form-data"):
        async with request.form() as form:
            options = JobOptions.from_mapping(_form_fields(form, skip=("file", "url")))
            url = form.get("url")
            if isinstance(url, str) and url and form.get("file") is None:
                job = await run_in_threadpool(service.submit_url, url, options)
            else:
                upload = _upload(form)
                job = await run_in_threadpool(
                    service.submit_upload, upload.file, upload.filename, options
                )
    else:
        raise UsageError(
            f"content type {content_type or 'none'!r} not accepted: send multipart/form-data "
            "with a file, or application/json with a url"
        )
    return JSONResponse(job_json(job), status_code=201, headers={"Location": f"/v1/jobs/{job.id}"})


@jobs.get("")
def list_jobs(
    service: ServiceDep, status: JobStatus | None = None, limit: int = 100
) -> dict[str, Any]:
    return {"jobs": [job_json(job) for job in service.list(status, limit)]}


@jobs.get("/{job_id}")
def get_job(job_id: str, service: ServiceDep) -> dict[str, Any]:
    return job_json(service.get(job_id))


@jobs.delete("/{job_id}")
def cancel_job(job_id: str, service: ServiceDep) -> dict[str, Any]:
    return job_json(service.cancel(job_id))


@jobs.get("/{job_id}/subtitles.{fmt}")
def get_subtitles(job_id: str, fmt: str, service: ServiceDep) -> Response:
    path = service.subtitle_path(job_id, fmt)
    return FileResponse(
        path, media_type=MEDIA_TYPES.get(fmt.lower(), "text/plain"), filename=path.name
    )


@jobs.get("/{job_id}/events")
def job_events(job_id: str, service: ServiceDep) -> StreamingResponse:
    """Server-sent events: the job's state now, then progress, finished, failed or cancelled."""
    stream = service.events(job_id)  # JobNotFoundError (404) before the stream starts

    def body() -> Iterator[str]:
        for event in stream:
            yield _sse(event.kind, job_json(event.job))

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# -- OpenAI-compatible audio --------------------------------------------------------------------

audio = APIRouter(prefix="/v1/audio", tags=["openai"], dependencies=[Depends(require_api_key)])


async def _openai(request: Request, service: Service, task: str) -> Response:
    async with request.form() as form:
        upload = _upload(form)
        response_format = str(form.get("response_format") or "json")
        if response_format not in OPENAI_FORMATS:
            raise UsageError(
                f"response_format must be one of {', '.join(OPENAI_FORMATS)}, "
                f"got {response_format!r}"
            )
        granularities = tuple(
            str(g)
            for name in ("timestamp_granularities[]", "timestamp_granularities")
            for g in form.getlist(name)
        )
        unknown = sorted(set(granularities) - set(GRANULARITIES))
        if unknown:
            raise UsageError(
                f"timestamp_granularities must be word and/or segment, got {', '.join(unknown)}"
            )
        if str(form.get("stream") or "false").lower() == "true":
            raise UsageError("stream=true is not supported: use /v1/jobs/{id}/events")
        fields = {
            "task": task,
            "model": form.get("model"),
            "initial_prompt": form.get("prompt"),
            "temperature": form.get("temperature"),
            "language": form.get("language") if task == "transcribe" else None,
        }
        options = JobOptions.from_mapping(
            {k: v for k, v in fields.items() if v is None or isinstance(v, str)}
        )
        transcript = await run_in_threadpool(
            service.transcribe_upload, upload.file, upload.filename, options
        )
    return openai_response(transcript, task, response_format, granularities)


@audio.post("/transcriptions")
async def transcriptions(request: Request, service: ServiceDep) -> Response:
    """OpenAI's ``POST /v1/audio/transcriptions``: answered when the audio is transcribed."""
    return await _openai(request, service, "transcribe")


@audio.post("/translations")
async def translations(request: Request, service: ServiceDep) -> Response:
    """OpenAI's ``POST /v1/audio/translations`` (to English)."""
    return await _openai(request, service, "translate")


# -- the server ---------------------------------------------------------------------------------

server = APIRouter(tags=["server"])


@server.get("/v1/status", dependencies=[Depends(require_api_key)])
def get_status(service: ServiceDep) -> dict[str, Any]:
    """Devices, worker slots, chunks active and queued, jobs by state."""
    return service.status().to_json()


@server.get("/healthz")
def healthz(service: ServiceDep) -> JSONResponse:
    """200 once a worker has its model loaded; 503 before, and when no worker can load it."""
    health = service.health()
    return JSONResponse({"status": health}, status_code=200 if health == "ok" else 503)


@server.get("/metrics")
def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@server.get("/", include_in_schema=False)
def root(request: Request) -> RedirectResponse:
    return RedirectResponse("/ui" if request.app.state.ui else "/docs")


# -- the app ------------------------------------------------------------------------------------


def create_app(settings: Settings, service: Service | None = None) -> FastAPI:
    """The whole HTTP app over one ``Service`` (made from ``settings`` unless given)."""
    service = service or Service(settings)
    service_metrics = ServiceMetrics(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)
        try:
            yield
        finally:
            await run_in_threadpool(service.close)

    app = FastAPI(
        title="whisper-subs",
        summary="Long audio and video to readable subtitles with Whisper",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.metrics = service_metrics
    app.state.ui = False
    handlers: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
        WhisperSubsError: _on_our_error,
        StarletteHTTPException: _on_http_error,
        RequestValidationError: _on_validation_error,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)
    app.add_middleware(BodyLimitMiddleware, max_bytes=service.settings.max_upload_bytes)
    for router in (jobs, audio, server):
        app.include_router(router)
    app.state.ui = _mount_ui(app, service)
    return app


def _mount_ui(app: FastAPI, service: Service) -> bool:
    try:
        from .web import mount_ui
    except ImportError as exc:
        log.info("web UI not available (%s); serving the API only", exc)
        return False
    mount_ui(app, service)
    return True
