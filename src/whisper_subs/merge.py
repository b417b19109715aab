"""Chunk results to one input's absolute timeline: pure functions.

Chunks never overlap (chunking), so each word comes from exactly one chunk: merging shifts
times by the chunk's start, clamps them into the chunk and keeps them monotonic, and never has
to de-duplicate text at an edge.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace

from .types import Chunk, ChunkResult, Segment, Word


def merge_chunks(chunks: Sequence[Chunk], results: Mapping[int, ChunkResult]) -> list[Segment]:
    """Segments of every chunk that has a result, in time order, with absolute times."""
    merged: list[Segment] = []
    last_end = 0.0
    for chunk in sorted(chunks, key=lambda c: c.start):
        result = results.get(chunk.index)
        if result is None:
            continue
        for segment in result.segments:
            shifted = _shift(segment, chunk.start_s, chunk.end_s, last_end)
            if not shifted.text.strip():
                continue
            merged.append(shifted)
            last_end = shifted.end
    return merged


def _clamp(t: float, lo: float, hi: float) -> float:
    return min(max(t, lo), hi)


def _shift(segment: Segment, offset: float, chunk_end: float, floor: float) -> Segment:
    lo = max(offset, floor)
    words: list[Word] = []
    previous_end = lo
    for word in segment.words:
        start = _clamp(word.start + offset, previous_end, chunk_end)
        end = _clamp(word.end + offset, start, chunk_end)
        words.append(replace(word, start=round(start, 3), end=round(end, 3)))
        previous_end = end
    if words:
        start, end = words[0].start, words[-1].end
    else:
        start = _clamp(segment.start + offset, lo, chunk_end)
        end = _clamp(segment.end + offset, start, chunk_end)
    return replace(segment, start=round(start, 3), end=round(end, 3), words=tuple(words))


def majority_language(chunks: Sequence[Chunk], results: Mapping[int, ChunkResult]) -> str:
    """The language spoken longest, weighting each chunk by its duration."""
    weights: Counter[str] = Counter()
    for chunk in chunks:
        result = results.get(chunk.index)
        if result is not None and result.segments:
            weights[result.language] += chunk.duration_s
    return weights.most_common(1)[0][0] if weights else ""
