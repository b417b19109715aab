"""whisper-subs: long audio and video to readable subtitles with Whisper, over a worker pool.

The Python API::

    import whisper_subs
    transcript = whisper_subs.transcribe("talk.mp4", model="base")

    # many inputs, models loaded once per worker:
    from whisper_subs import (PipelineOptions, Transcriber, WorkerOptions, WorkerPool,
                              plan_workers, resolve_model)
    _, slots = plan_workers(resolve_model("base"), WorkerOptions())
    with WorkerPool(slots) as pool:
        transcriber = Transcriber(pool, PipelineOptions())
        for path in paths:
            transcript = transcriber.transcribe(path)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# Public names, imported on first use so that `whisper-subs --help` stays fast.
_EXPORTS = {
    "transcribe": "pipeline",
    "Transcriber": "pipeline",
    "PipelineOptions": "pipeline",
    "SubtitleOptions": "pipeline",
    "WorkerPool": "pool",
    "DeviceSlots": "pool",
    "WorkerOptions": "workers",
    "plan_workers": "workers",
    "resolve_model": "models",
    "DecodeOptions": "engine",
    "Transcript": "types",
    "WhisperSubsError": "errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
