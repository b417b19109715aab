"""Speech spans from Silero VAD (the ONNX model faster-whisper ships).

We keep VAD's own spans fine-grained (short minimum silence, no maximum length): the chunk
planner, not VAD, decides where chunks end, so it needs to see every pause.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .types import SAMPLE_RATE, SpeechSpan


@dataclass(frozen=True, slots=True)
class VadOptions:
    threshold: float = 0.5  # speech probability above which a 32 ms window is speech
    min_silence_ms: int = 160  # a pause shorter than this does not end a span
    speech_pad_ms: int = 0  # no padding: the planner needs to see the real pauses; it pads chunks
    min_speech_ms: int = 0  # spans shorter than this are dropped by VAD itself


def detect_speech(audio: np.ndarray, options: VadOptions | None = None) -> list[SpeechSpan]:
    """Return the speech spans of ``audio`` (16 kHz mono float32), ordered, non-overlapping."""
    from faster_whisper.vad import VadOptions as FwVadOptions
    from faster_whisper.vad import get_speech_timestamps

    options = options or VadOptions()
    if audio.size == 0:
        return []
    raw = get_speech_timestamps(
        audio,
        FwVadOptions(
            threshold=options.threshold,
            min_silence_duration_ms=options.min_silence_ms,
            speech_pad_ms=options.speech_pad_ms,
            min_speech_duration_ms=options.min_speech_ms,
        ),
        sampling_rate=SAMPLE_RATE,
    )
    spans: list[SpeechSpan] = []
    for item in raw:
        start, end = max(0, int(item["start"])), min(audio.size, int(item["end"]))
        if spans and start < spans[-1].end:  # padding can make neighbours touch or overlap
            start = spans[-1].end
        if end > start:
            spans.append(SpeechSpan(start, end))
    return spans
