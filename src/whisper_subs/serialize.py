"""ChunkResult to and from JSON-ready dicts, so the job store can keep each chunk as it finishes.

The round trip is exact: every float is written with ``repr`` precision by ``json`` and read back
to the same value, tuples come back as tuples, and field order does not matter on the way in.
A payload that is not one of ours raises ValueError with the field that was wrong.

``dumps_chunk`` also records which slice of the audio the result belongs to, so a resumed job
reuses a saved result only for the very same chunk of its new plan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .types import Chunk, ChunkResult, Segment, Word

FORMAT_VERSION = 1  # bump when the layout changes; from_dict refuses versions it does not know


def word_to_dict(word: Word) -> dict[str, Any]:
    return {
        "start": float(word.start),
        "end": float(word.end),
        "word": str(word.word),
        "probability": float(word.probability),
    }


def segment_to_dict(segment: Segment) -> dict[str, Any]:
    return {
        "start": float(segment.start),
        "end": float(segment.end),
        "text": str(segment.text),
        "words": [word_to_dict(w) for w in segment.words],
        "avg_logprob": float(segment.avg_logprob),
        "no_speech_prob": float(segment.no_speech_prob),
        "compression_ratio": float(segment.compression_ratio),
    }


def to_dict(result: ChunkResult) -> dict[str, Any]:
    """A JSON-ready dict of ``result`` (floats as Python floats, even from numpy)."""
    return {
        "version": FORMAT_VERSION,
        "language": str(result.language),
        "language_probability": float(result.language_probability),
        "segments": [segment_to_dict(s) for s in result.segments],
    }


def _field(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    try:
        value = data[name]
    except KeyError:
        raise ValueError(f"{where}: missing field {name!r}") from None
    # bool is an int; a float field must not silently take true/false.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{where}.{name}: expected {kind}, got {value!r}")
    return value


def _float(data: Mapping[str, Any], name: str, where: str) -> float:
    return float(_field(data, name, (int, float), where))


def word_from_dict(data: Mapping[str, Any], where: str = "word") -> Word:
    return Word(
        start=_float(data, "start", where),
        end=_float(data, "end", where),
        word=_field(data, "word", str, where),
        probability=_float(data, "probability", where),
    )


def segment_from_dict(data: Mapping[str, Any], where: str = "segment") -> Segment:
    words = _field(data, "words", list, where)
    return Segment(
        start=_float(data, "start", where),
        end=_float(data, "end", where),
        text=_field(data, "text", str, where),
        words=tuple(word_from_dict(w, f"{where}.words[{i}]") for i, w in enumerate(words)),
        avg_logprob=_float(data, "avg_logprob", where),
        no_speech_prob=_float(data, "no_speech_prob", where),
        compression_ratio=_float(data, "compression_ratio", where),
    )


def from_dict(data: Mapping[str, Any]) -> ChunkResult:
    """The ChunkResult ``to_dict`` made; ValueError for anything else."""
    version = _field(data, "version", int, "chunk result")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"chunk result has format version {version}; this whisper-subs reads version "
            f"{FORMAT_VERSION} only"
        )
    segments = _field(data, "segments", list, "chunk result")
    return ChunkResult(
        segments=tuple(segment_from_dict(s, f"segments[{i}]") for i, s in enumerate(segments)),
        language=_field(data, "language", str, "chunk result"),
        language_probability=_float(data, "language_probability", "chunk result"),
    )


def dumps(result: ChunkResult) -> str:
    """Compact JSON text of ``result``, as the job store keeps it."""
    return json.dumps(to_dict(result), ensure_ascii=False, separators=(",", ":"))


def loads(text: str) -> ChunkResult:
    """The ChunkResult of ``dumps``' text; ValueError for text that is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"chunk result is not JSON: {exc}") from exc
    return from_dict(data)


def dumps_chunk(chunk: Chunk, result: ChunkResult) -> str:
    """JSON text of ``result`` with the chunk it belongs to (index, start and end samples)."""
    data = to_dict(result)
    data["chunk"] = {"index": chunk.index, "start": chunk.start, "end": chunk.end}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def loads_chunk(text: str) -> tuple[Chunk, ChunkResult]:
    """The chunk and result of ``dumps_chunk``'s text; ValueError for text that is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"chunk result is not JSON: {exc}") from exc
    where = "chunk result"
    bounds = _field(data, "chunk", Mapping, where)
    chunk = Chunk(
        index=_field(bounds, "index", int, f"{where}.chunk"),
        start=_field(bounds, "start", int, f"{where}.chunk"),
        end=_field(bounds, "end", int, f"{where}.chunk"),
    )
    return chunk, from_dict(data)
