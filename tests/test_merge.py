"""merge.merge_chunks: absolute, monotonic times; every word once (hypothesis) and worked cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whisper_subs.merge import majority_language, merge_chunks
from whisper_subs.types import SAMPLE_RATE, Chunk, ChunkResult, Segment, Word

pytestmark = pytest.mark.timeout(120)

EPS = 0.0005 + 1e-9  # merge rounds to the millisecond


@st.composite
def chunk_plan(draw: st.DrawFn) -> list[Chunk]:
    """Ordered, non-overlapping chunks (gaps from none to 5 s), at most 30 s each."""
    chunks = []
    at = draw(st.integers(0, 5 * SAMPLE_RATE))
    for index in range(draw(st.integers(1, 8))):
        length = draw(st.integers(SAMPLE_RATE // 2, 30 * SAMPLE_RATE))
        chunks.append(Chunk(index, at, at + length))
        at += length + draw(st.integers(0, 5 * SAMPLE_RATE))
    return chunks


@st.composite
def chunk_result(draw: st.DrawFn, chunk: Chunk, well_formed: bool) -> ChunkResult:
    """Segments of one chunk. Words carry unique text (``c<chunk>s<seg>w<k>``) to be traced.

    Well formed: ordered times inside the chunk. Otherwise anything the engine might emit:
    times before 0, past the chunk's end, out of order, ends before starts.
    """
    duration = chunk.duration_s
    shape = draw(st.lists(st.integers(0, 6), max_size=4))  # words per segment
    needed = sum(2 * n + 2 for n in shape)
    if well_formed:
        pool = sorted(draw(st.lists(st.floats(0, duration), min_size=needed, max_size=needed)))
    else:
        pool = draw(st.lists(st.floats(-5, duration + 5), min_size=needed, max_size=needed))
    segments = []
    for si, n_words in enumerate(shape):
        times, pool = pool[: 2 * n_words + 2], pool[2 * n_words + 2 :]
        words = tuple(
            Word(times[2 * k + 1], times[2 * k + 2], f" c{chunk.index}s{si}w{k}")
            for k in range(n_words)
        )
        blank = draw(st.booleans()) and draw(st.booleans())  # a quarter of segments say nothing
        text = " " if blank else "".join(w.word for w in words) or f" c{chunk.index}s{si}"
        segments.append(Segment(times[0], times[-1], text, words))
    return ChunkResult(tuple(segments), "en")


@st.composite
def merge_case(draw: st.DrawFn) -> tuple[list[Chunk], dict[int, ChunkResult], bool]:
    chunks = draw(chunk_plan())
    well_formed = draw(st.booleans())
    results = {}
    for chunk in chunks:
        if draw(st.integers(0, 4)) > 0:  # some chunks have no result (failed)
            results[chunk.index] = draw(chunk_result(chunk, well_formed))
    shuffled = draw(st.permutations(chunks))  # merge must not depend on the chunks' order
    return list(shuffled), results, well_formed


@settings(max_examples=300, deadline=None)
@given(case=merge_case())
def test_merge_invariants(case: tuple[list[Chunk], dict[int, ChunkResult], bool]) -> None:
    chunks, results, well_formed = case
    merged = merge_chunks(chunks, results)
    by_index = {c.index: c for c in chunks}

    # Words neither lost nor doubled, in time order: every word of every non-blank segment.
    expected = [
        w.word
        for chunk in sorted(chunks, key=lambda c: c.start)
        if chunk.index in results
        for segment in results[chunk.index].segments
        if segment.text.strip()
        for w in segment.words
    ]
    assert [w.word for seg in merged for w in seg.words] == expected
    assert all(seg.text.strip() for seg in merged)

    # Monotonic: segments and words never go back in time, and each ends after it starts.
    previous_end = 0.0
    for seg in merged:
        assert previous_end <= seg.start <= seg.end
        inner = seg.start
        for w in seg.words:
            assert inner <= w.start <= w.end <= seg.end
            inner = w.end
        previous_end = seg.end

    # Absolute: inside the chunk each segment came from.
    sources = [
        by_index[i] for i in sorted(results, key=lambda i: by_index[i].start)
        for segment in results[i].segments if segment.text.strip()
    ]  # fmt: skip
    assert len(sources) == len(merged)
    for seg, chunk in zip(merged, sources, strict=True):
        assert chunk.start_s - EPS <= seg.start and seg.end <= chunk.end_s + EPS
        for w in seg.words:
            assert chunk.start_s - EPS <= w.start and w.end <= chunk.end_s + EPS

    if well_formed:
        # Nothing to clamp: each time is the chunk-relative time plus the chunk's start.
        originals = [
            (w, by_index[i].start_s)
            for i in sorted(results, key=lambda i: by_index[i].start)
            for segment in results[i].segments if segment.text.strip()
            for w in segment.words
        ]  # fmt: skip
        out = [w for seg in merged for w in seg.words]
        for (original, offset), word in zip(originals, out, strict=True):
            assert word.start == pytest.approx(original.start + offset, abs=EPS)
            assert word.end == pytest.approx(original.end + offset, abs=EPS)


def test_merge_shifts_and_skips_missing_chunks() -> None:
    chunks = [Chunk(0, 0, 10 * SAMPLE_RATE), Chunk(1, 12 * SAMPLE_RATE, 20 * SAMPLE_RATE),
              Chunk(2, 20 * SAMPLE_RATE, 25 * SAMPLE_RATE)]  # fmt: skip
    results = {
        0: ChunkResult((Segment(1.0, 2.0, " one", (Word(1.0, 2.0, " one"),)),), "en"),
        2: ChunkResult((Segment(0.5, 1.5, " three", (Word(0.5, 1.5, " three"),)),), "en"),
    }
    merged = merge_chunks(chunks, results)
    assert [(s.start, s.end, s.text) for s in merged] == [
        (1.0, 2.0, " one"),
        (20.5, 21.5, " three"),
    ]


def test_a_word_past_the_chunk_end_is_clamped_into_it() -> None:
    chunk = Chunk(0, 10 * SAMPLE_RATE, 15 * SAMPLE_RATE)
    result = ChunkResult((Segment(4.0, 7.0, " late", (Word(4.0, 7.0, " late"),)),), "en")
    (segment,) = merge_chunks([chunk], {0: result})
    assert (segment.start, segment.end) == (14.0, 15.0)


def test_majority_language_weights_by_duration() -> None:
    chunks = [Chunk(0, 0, 30 * SAMPLE_RATE), Chunk(1, 30 * SAMPLE_RATE, 35 * SAMPLE_RATE),
              Chunk(2, 35 * SAMPLE_RATE, 40 * SAMPLE_RATE)]  # fmt: skip
    seg = (Segment(0, 1, " x"),)
    results = {0: ChunkResult(seg, "de"), 1: ChunkResult(seg, "en"), 2: ChunkResult(seg, "en")}
    assert majority_language(chunks, results) == "de"
    assert majority_language(chunks, {}) == ""
