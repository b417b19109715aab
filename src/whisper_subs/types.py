"""Typed data that flows between the stages. Times are seconds unless a name says samples."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 16_000


@dataclass(frozen=True, slots=True)
class SpeechSpan:
    """A stretch of speech found by VAD, in samples: ``[start, end)``."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """A slice of one input's audio, ``[start, end)`` in samples, starting and ending in pauses."""

    index: int
    start: int
    end: int

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.end / SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class Word:
    start: float
    end: float
    word: str  # as Whisper emits it, with its leading space where there is one
    probability: float = 1.0


@dataclass(frozen=True, slots=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 1.0


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What the engine returns for one chunk; times are relative to the chunk's start."""

    segments: tuple[Segment, ...]
    language: str
    language_probability: float = 1.0


@dataclass(frozen=True, slots=True)
class ChunkError:
    """A chunk that failed on every attempt: reported, never dropped silently."""

    chunk_index: int
    start: float
    end: float
    message: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Cue:
    """One subtitle event."""

    start: float
    end: float
    text: str  # lines joined by "\n"


@dataclass(frozen=True, slots=True)
class Removed:
    """A segment a hallucination guard removed, and why."""

    start: float
    end: float
    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class Transcript:
    """One input's result, times absolute."""

    language: str
    duration: float
    segments: tuple[Segment, ...]
    errors: tuple[ChunkError, ...] = ()
    cues: tuple[Cue, ...] = ()
    removed: tuple[Removed, ...] = ()
    speech_s: float = 0.0
