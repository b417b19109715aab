"""Plan chunks from speech spans: pure data in, pure data out.

A chunk covers one or more speech spans, is at most ``max_chunk_s`` long and starts and ends in
a pause. Spans are merged greedily while they fit; when the next span does not fit, the group is
cut at its widest pause among the cuts that leave the chunk at least ``min_chunk_s`` long (chunks
near 30 s use Whisper's fixed 30 s window best). A single span longer than the maximum (speech
with no pause at all) is cut into equal pieces. Chunks get up to ``pad_s`` of the surrounding
pause on each side, never more than half of it, so neighbours never overlap.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import UsageError
from .types import SAMPLE_RATE, Chunk, SpeechSpan


@dataclass(frozen=True, slots=True)
class ChunkOptions:
    max_chunk_s: float = 30.0  # no chunk is longer (Whisper's window)
    min_chunk_s: float = 24.0  # when a group must be cut, cut where this much is kept
    min_span_s: float = 0.1  # speech spans shorter than this are noise and dropped
    pad_s: float = 0.3  # pause kept on each side of a chunk, at most half the pause

    def __post_init__(self) -> None:
        if not 1.0 <= self.max_chunk_s <= 30.0:
            raise UsageError(f"max chunk length must be between 1 and 30 s, got {self.max_chunk_s}")
        if not 0.0 <= self.min_chunk_s <= self.max_chunk_s:
            raise UsageError(
                f"min chunk length must be between 0 and the maximum ({self.max_chunk_s} s), "
                f"got {self.min_chunk_s}"
            )


def plan_chunks(
    spans: Sequence[SpeechSpan], total_samples: int, options: ChunkOptions | None = None
) -> list[Chunk]:
    """Turn ordered, non-overlapping speech spans into ordered, non-overlapping chunks."""
    options = options or ChunkOptions()
    max_len = int(options.max_chunk_s * SAMPLE_RATE)
    min_len = int(options.min_chunk_s * SAMPLE_RATE)
    min_span = int(options.min_span_s * SAMPLE_RATE)
    kept = [s for s in spans if s.end - s.start >= min_span]
    pieces = [piece for span in kept for piece in _split_long(span, max_len)]

    groups: list[tuple[int, int]] = []  # (first, last) piece index, inclusive
    first = 0
    while first < len(pieces):
        last = first
        while last + 1 < len(pieces) and pieces[last + 1].end - pieces[first].start <= max_len:
            last += 1
        if last + 1 < len(pieces) and last > first:
            last = _widest_cut(pieces, first, last, min_len)
        groups.append((first, last))
        first = last + 1

    pad = int(options.pad_s * SAMPLE_RATE)
    chunks: list[Chunk] = []
    for index, (first, last) in enumerate(groups):
        start, end = pieces[first].start, pieces[last].end
        room = max_len - (end - start)
        prev_end = pieces[first - 1].end if first > 0 else 0
        next_start = pieces[last + 1].start if last + 1 < len(pieces) else total_samples
        before = min(pad, (start - prev_end) // 2 if first > 0 else start, room // 2)
        after = min(pad, (next_start - end) // 2 if last + 1 < len(pieces) else next_start - end)
        after = max(0, min(after, room - before))
        chunks.append(Chunk(index, start - max(0, before), end + after))
    return chunks


def _split_long(span: SpeechSpan, max_len: int) -> list[SpeechSpan]:
    length = span.end - span.start
    if length <= max_len:
        return [span]
    parts = math.ceil(length / max_len)
    bounds = [span.start + length * i // parts for i in range(parts + 1)]
    return [SpeechSpan(a, b) for a, b in itertools.pairwise(bounds)]


def _widest_cut(pieces: Sequence[SpeechSpan], first: int, last: int, min_len: int) -> int:
    """Index of the piece after which to cut the group ``first..last`` (widest pause wins)."""
    candidates = range(first, last + 1)
    long_enough = [k for k in candidates if pieces[k].end - pieces[first].start >= min_len]
    # The last piece can always end the group (the next one does not fit); otherwise prefer
    # cuts that keep the chunk long enough, then the widest pause after the cut.
    pool = long_enough or list(candidates)
    return max(pool, key=lambda k: (pieces[k + 1].start - pieces[k].end, k))
