"""chunking.plan_chunks: invariants over any speech spans (hypothesis) and a few worked cases."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whisper_subs.chunking import ChunkOptions, plan_chunks
from whisper_subs.errors import UsageError
from whisper_subs.types import SAMPLE_RATE, Chunk, SpeechSpan

pytestmark = pytest.mark.timeout(120)

SR = SAMPLE_RATE


def s(start_s: float, end_s: float) -> SpeechSpan:
    return SpeechSpan(int(start_s * SR), int(end_s * SR))


@st.composite
def spans_and_total(draw: st.DrawFn) -> tuple[list[SpeechSpan], int]:
    """Ordered, non-overlapping spans: alternating pauses and speech, lengths in samples."""
    n = draw(st.integers(0, 25))
    lead = draw(st.integers(0, 5 * SR))
    spans = []
    at = lead
    for _ in range(n):
        # Speech from a few ms (noise the planner drops) to 75 s (speech with no pause at all).
        length = draw(st.one_of(st.integers(1, SR // 5), st.integers(SR // 5, 75 * SR)))
        spans.append(SpeechSpan(at, at + length))
        # Pauses from none at all (touching spans) to 4 s.
        at += length + draw(st.integers(0, 4 * SR))
    total = at + draw(st.integers(0, 3 * SR))
    return spans, total


options_strategy = st.builds(
    lambda max_s, min_frac, pad: ChunkOptions(
        max_chunk_s=max_s, min_chunk_s=max_s * min_frac, pad_s=pad
    ),
    st.floats(1.0, 30.0),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
)


def covering(chunks: list[Chunk], sample: int) -> list[Chunk]:
    return [c for c in chunks if c.start <= sample < c.end]


@settings(max_examples=300, deadline=None)
@given(data=spans_and_total(), options=st.one_of(st.just(ChunkOptions()), options_strategy))
def test_plan_invariants(data: tuple[list[SpeechSpan], int], options: ChunkOptions) -> None:
    spans, total = data
    chunks = plan_chunks(spans, total, options)
    max_len = int(options.max_chunk_s * SR)
    min_span = int(options.min_span_s * SR)

    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert 0 <= chunk.start < chunk.end <= total
        assert chunk.end - chunk.start <= max_len
    for before, after in itertools.pairwise(chunks):
        assert before.end <= after.start  # ordered and non-overlapping

    kept = [span for span in spans if span.end - span.start >= min_span]
    for span in kept:
        # Every speech sample in exactly one chunk: chunks do not overlap (above), so it is
        # enough that the chunks covering the span's samples cover all of it, without holes.
        inside = [c for c in chunks if c.start < span.end and span.start < c.end]
        assert inside, f"span {span} is in no chunk"
        assert inside[0].start <= span.start
        assert inside[-1].end >= span.end
        for left, right in itertools.pairwise(inside):
            assert left.end == right.start, f"span {span} has a hole between {left} and {right}"
        for sample in (span.start, (span.start + span.end) // 2, span.end - 1):
            assert len(covering(chunks, sample)) == 1
    if not kept:
        assert chunks == []


def test_pauses_are_split_and_chunks_padded() -> None:
    spans = [s(1, 10), s(11, 20), s(21, 29), s(31, 40)]
    chunks = plan_chunks(spans, 45 * SR, ChunkOptions(max_chunk_s=30, min_chunk_s=15, pad_s=0.3))
    assert [(c.start_s, c.end_s) for c in chunks] == [(0.7, 29.3), (30.7, 40.3)]


def test_cut_at_the_widest_pause_that_keeps_the_chunk_long_enough() -> None:
    # 0-8, 8.2-16, (pause 2 s) 18-24, 24.1-29, then 29.5-35 does not fit.
    spans = [s(0, 8), s(8.2, 16), s(18, 24), s(24.1, 29), s(29.5, 35)]
    chunks = plan_chunks(spans, 40 * SR, ChunkOptions(max_chunk_s=30, min_chunk_s=15, pad_s=0))
    assert [(c.start_s, c.end_s) for c in chunks] == [(0.0, 16.0), (18.0, 35.0)]


def test_speech_without_a_pause_is_cut_into_equal_pieces() -> None:
    chunks = plan_chunks([s(0, 70)], 70 * SR, ChunkOptions(pad_s=0))
    assert [round(c.duration_s, 3) for c in chunks] == [23.333, 23.333, 23.333]
    assert chunks[0].start == 0 and chunks[-1].end == 70 * SR


def test_short_noise_is_dropped() -> None:
    assert plan_chunks([SpeechSpan(0, 100)], SR, ChunkOptions()) == []


def test_options_are_checked() -> None:
    with pytest.raises(UsageError, match="max chunk length"):
        ChunkOptions(max_chunk_s=31)
    with pytest.raises(UsageError, match="min chunk length"):
        ChunkOptions(max_chunk_s=10, min_chunk_s=12)
