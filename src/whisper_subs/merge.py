"""Chunk results to one input's absolute timeline: pure functions.

Chunks never overlap (chunking), so each word comes from exactly one chunk: merging shifts
times by the chunk's start, clamps them into the chunk and keeps them monotonic, and never has
to de-duplicate text at an edge.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
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


def snap_to_speech(
    segments: Sequence[Segment], spans_s: Sequence[tuple[float, float]], min_gap_s: float = 0.15
) -> list[Segment]:
    """Move word edges that reach into a VAD pause back to the pause's edge.

    Whisper's cross-attention alignment smears word edges into neighbouring silence: a word
    after a pause often "starts" before the pause, and its end is the more reliable edge. VAD
    knows where the pause is: a word that starts inside a pause, or spans all of one, starts at
    its end; a word that ends inside one ends at its start. Words keep their order.
    """
    gaps = [
        (a_end, b_start)
        for (_, a_end), (b_start, _) in itertools.pairwise(spans_s)
        if b_start - a_end >= min_gap_s
    ]
    if not gaps:
        return list(segments)
    starts = [g[0] for g in gaps]
    out = []
    for segment in segments:
        words = []
        for word in segment.words:
            start, end = word.start, word.end
            i = bisect_right(starts, start) - 1
            if i >= 0 and start < gaps[i][1] < end:  # starts inside the pause
                start = gaps[i][1]
            elif i + 1 < len(gaps) and start <= gaps[i + 1][0] and gaps[i + 1][1] < end:
                start = gaps[i + 1][1]  # spans a whole pause
            j = bisect_right(starts, end) - 1
            if j >= 0 and start < gaps[j][0] < end < gaps[j][1]:
                end = gaps[j][0]
            words.append(replace(word, start=round(start, 3), end=round(end, 3)))
        if words:
            segment = replace(segment, start=words[0].start, end=words[-1].end, words=tuple(words))
        out.append(segment)
    return out
